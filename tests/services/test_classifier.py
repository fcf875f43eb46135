"""Classifier over real HTTP: KServe V1 predictions for both versions, readiness, errors."""

from __future__ import annotations

import pytest
import requests

from tests.services.stack import ServeStack

PREDICT = "/v1/models/classifier:predict"
PATHS = {
    "v1": "/classifier" + PREDICT,
    "v1-router": "/canary/classifier/v1" + PREDICT,
    "v2-router": "/canary/classifier/v2" + PREDICT,
}
SETOSA, VERSICOLOR, VIRGINICA = [5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [7.7, 3.0, 6.1, 2.3]

pytestmark = pytest.mark.e2e  # real local Ray + Serve (session fixture: conftest.py)


@pytest.mark.parametrize("path", PATHS.values(), ids=PATHS.keys())
def test_predicts_iris_classes(stack: ServeStack, path: str) -> None:
    r = requests.post(
        stack.url(path), json={"instances": [SETOSA, VERSICOLOR, VIRGINICA]}, timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [0, 1, 2]}


def test_kserve_readiness_and_index(stack: ServeStack) -> None:
    status = requests.get(stack.url("/classifier/v1/models/classifier"), timeout=30)
    assert status.status_code == 200 and status.json() == {"name": "classifier", "ready": True}
    assert requests.get(stack.url("/classifier/v1/models"), timeout=30).json() == {
        "models": ["classifier"]
    }
    v2 = requests.get(stack.url("/canary/classifier/v2/ready"), timeout=30).json()
    assert v2["version"] == "v2" and v2["ready"] is True


BAD_REQUESTS = [
    ("no rows", b'{"instances": []}', 422, "instances: must contain at least one row"),
    ("wrong feature count", b'{"instances": [[1, 2, 3]]}', 422, "instances[0]: 3 features"),
    ("string feature", b'{"instances": [[1, 2, "3", 4]]}', 422, "instances[0][2]"),
    ("NaN feature", b'{"instances": [[1, 2, NaN, 4]]}', 422, "instances[0][2]"),
    ("huge number", b'{"instances": [[1, 2, 1e999, 4]]}', 422, "instances[0][2]"),
    # Finite in JSON but beyond float32, which the v2 tree model casts to (found by schemathesis).
    (
        "out of range",
        b'{"instances": [[1, 2, -1.7976931348623157e308, 4]]}',
        422,
        "instances[0][2]",
    ),
    ("too many rows", b'{"instances": [' + b",".join([b"[1,2,3,4]"] * 257) + b"]}", 422, "257"),
    ("missing instances", b'{"inputs": [[1, 2, 3, 4]]}', 422, "instances: field required"),
    ("invalid JSON", b"{instances", 400, "not valid JSON"),
    ("body over 1 MiB", b'{"instances": [[' + b"1," * 600_000 + b"1]]}", 413, "larger than"),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_kserve_errors(
    stack: ServeStack, case: str, body: bytes, status: int, message: str
) -> None:
    r = requests.post(
        stack.url(PATHS["v1"]),
        data=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == status, f"{case}: {r.status_code} {r.text[:300]}"
    assert message in r.json()["error"], f"{case}: {r.json()}"

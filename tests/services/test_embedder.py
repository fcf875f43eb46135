"""Embedder over real HTTP on the session's Ray Serve: semantics, versions, API shape, errors."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests

from tests.services.sentences import fixed_sentences
from tests.services.stack import ServeStack

V1 = "/embedder/v1/embeddings"
V2 = "/canary/embedder/v2/v1/embeddings"  # embedder-v2, its own application

pytestmark = pytest.mark.e2e  # real local Ray + Serve (session fixture: conftest.py)


def embed(stack: ServeStack, path: str, texts: list[str]) -> np.ndarray:
    r = requests.post(stack.url(path), json={"input": texts}, timeout=120)
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def test_paraphrases_are_closer_than_unrelated_sentences(stack: ServeStack) -> None:
    a, b, c, d = embed(
        stack,
        V1,
        [
            "The cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "Interest rates rose by half a percentage point.",
            "The central bank increased borrowing costs.",
        ],
    )
    assert a @ b > a @ c + 0.3 and a @ b > a @ d + 0.3
    assert c @ d > c @ a + 0.3
    assert np.allclose(np.linalg.norm([a, b, c, d], axis=1), 1, atol=1e-3)


def test_v2_onnx_agrees_with_v1_per_sentence(stack: ServeStack) -> None:
    sentences = fixed_sentences(120)
    v1 = np.concatenate([embed(stack, V1, sentences[i : i + 40]) for i in range(0, 120, 40)])
    v2 = np.concatenate([embed(stack, V2, sentences[i : i + 40]) for i in range(0, 120, 40)])
    cosine = (v1 * v2).sum(axis=1) / np.linalg.norm(v1, axis=1) / np.linalg.norm(v2, axis=1)
    worst = int(cosine.argmin())
    assert cosine.min() >= 0.99, f"cosine {cosine.min():.4f} for {sentences[worst]!r}"


def test_openai_response_shape(stack: ServeStack) -> None:
    r = requests.post(stack.url(V1), json={"input": "hello world", "model": "x"}, timeout=60)
    body = r.json()
    assert r.status_code == 200 and body["object"] == "list"
    assert body["model"] == "all-MiniLM-L6-v2"
    (item,) = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0 and len(item["embedding"]) == 384
    assert (
        body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == 4
    )  # CLS hello world SEP
    r64 = requests.post(
        stack.url(V1), json={"input": ["hello world"], "encoding_format": "base64"}, timeout=60
    )
    vec = np.frombuffer(base64.b64decode(r64.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vec, item["embedding"], atol=1e-5)


BAD_REQUESTS = [
    # (description, body bytes, status, substring of the message)
    ("empty list", b'{"input": []}', 422, "input: must contain at least one"),
    ("empty string", b'{"input": ["ok", " "]}', 422, "input[1]: must not be empty"),
    ("too many items", b'{"input": [' + b",".join([b'"a"'] * 65) + b"]}", 422, "limit is 64"),
    ("over-long string", b'{"input": "' + b"a" * 2001 + b'"}', 422, "input: 2001 characters"),
    ("number instead of text", b'{"input": 5}', 422, "input"),
    ("number in list", b'{"input": ["a", 7]}', 422, "input"),
    ("missing input", b'{"model": "m"}', 422, "input: field required"),
    ("unknown field", b'{"input": "a", "dimensions": 3}', 422, "dimensions"),
    ("invalid JSON", b'{"input": ', 400, "not valid JSON"),
    ("not UTF-8", b"\xff\xfe\x00", 400, ""),
    ("not an object", b"[1, 2]", 422, ""),
    ("body over 1 MiB", b'{"input": "' + b"a" * (1024 * 1024) + b'"}', 413, "larger than"),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_REQUESTS)
@pytest.mark.parametrize("path", [V1, V2], ids=["v1", "v2"])
def test_bad_requests_get_4xx_json_naming_the_problem(
    stack: ServeStack, path: str, case: str, body: bytes, status: int, message: str
) -> None:
    r = requests.post(
        stack.url(path), data=body, headers={"content-type": "application/json"}, timeout=60
    )
    assert r.status_code == status, f"{case}: {r.status_code} {r.text[:300]}"
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert message in error["message"], f"{case}: {error}"


def test_replica_survives_bad_input(stack: ServeStack) -> None:
    for body in (b"\xff\xfe", b'{"input": "\\ud800"}', b"null", b'{"input": {"a": 1}}'):
        r = requests.post(stack.url(V1), data=body, timeout=60)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    assert requests.get(stack.url("/embedder/ready"), timeout=30).json()["ready"] is True
    assert len(embed(stack, V1, ["still alive"])) == 1


def test_openapi_and_model_list(stack: ServeStack) -> None:
    spec = requests.get(stack.url("/embedder/openapi.json"), timeout=30).json()
    assert "/v1/embeddings" in spec["paths"]
    schema = spec["components"]["schemas"]["EmbeddingRequest"]
    assert "input" in schema["required"]
    models = requests.get(stack.url("/embedder/v1/models"), timeout=30).json()
    assert models["data"][0]["id"] == "all-MiniLM-L6-v2"
    ready = requests.get(stack.url("/embedder/ready"), timeout=30).json()
    assert ready == {"ready": True, "service": "embedder", "version": "v1", "device": "cpu"}

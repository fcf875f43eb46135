"""user_config knobs apply in place through reconfigure(): fault injection on, then off, with the
same replica; the injected errors are counted as server errors for the canary analysis."""

from __future__ import annotations

import time

import pytest
import requests

from tests.services.promtext import samples
from tests.services.servedeploy import load_serve_yaml
from tests.services.stack import ServeStack, session_apps

PREDICT = "/classifier/v1/models/classifier:predict"
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}

pytestmark = pytest.mark.e2e  # real local Ray + Serve (session fixture: conftest.py)


def classifier_user_config(**faults: float) -> dict:
    (dep,) = load_serve_yaml("classifier")["applications"][0]["deployments"]
    return {**dep["user_config"], "faults": {**dep["user_config"]["faults"], **faults}}


def wait_status(stack: ServeStack, status: int, timeout_s: float = 120) -> requests.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        r = requests.post(stack.url(PREDICT), json=ROW, timeout=60)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(1)


def test_fault_injection_applies_live_and_reverts(stack: ServeStack) -> None:
    replica = {
        s.labels["replica"]
        for s in samples(stack.metrics(), "ray_gantry_model_ready", service="classifier")
    }
    stack.redeploy(session_apps(classifier={"user_config": classifier_user_config(error_rate=1.0)}))
    try:
        r = wait_status(stack, 500)
        assert r.status_code == 500 and "injected fault" in r.json()["error"]
        # Readiness and metadata are not inference: they keep answering while faults are on.
        assert requests.get(stack.url("/classifier/ready"), timeout=30).status_code == 200
    finally:
        stack.redeploy(session_apps())
    assert wait_status(stack, 200).json() == {"predictions": [0]}
    server_errors = {"service": "classifier", "outcome": "server_error", "code": "500"}
    deadline = time.monotonic() + 90  # Ray's metrics agent exports every few seconds
    while not samples(text := stack.metrics(), "ray_gantry_requests_total", **server_errors):
        assert time.monotonic() < deadline, "injected 500s are not counted as server errors"
        time.sleep(3)
    after = {s.labels["replica"] for s in samples(text, "ray_gantry_model_ready")}
    assert replica <= after and len(after & replica) == len(replica), "replica was replaced"

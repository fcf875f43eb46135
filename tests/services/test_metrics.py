"""Metrics as Prometheus scrapes them from Ray's metrics-export port, and batching under load."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from services.common import metrics as gantry_metrics
from tests.services.promtext import names, samples, total
from tests.services.stack import ServeStack

EMBEDDER = {"service": "embedder", "version": "v1"}

pytestmark = pytest.mark.e2e  # real local Ray + Serve (session fixture: conftest.py)


def scrape_until(stack: ServeStack, done: Callable[[str], bool], timeout_s: float = 90) -> str:
    """Ray's agent exports every few seconds; poll until `done(scrape)`."""
    deadline = time.monotonic() + timeout_s
    text = stack.metrics()
    while not done(text) and time.monotonic() < deadline:
        time.sleep(2)
        text = stack.metrics()
    return text


def batches_over_one(text: str) -> float:
    """Batches of more than one request, from the batch-size histogram's buckets."""
    count = total(text, "ray_gantry_batch_size_count", **EMBEDDER)
    singles = total(text, "ray_gantry_batch_size_bucket", le="1.0", **EMBEDDER)
    return count - singles


def test_concurrent_requests_are_batched(stack: ServeStack) -> None:
    before = batches_over_one(stack.metrics())
    sentence = "Concurrent requests should share one forward pass number {}."

    def post(i: int) -> int:
        body = {"input": sentence.format(i)}
        return requests.post(
            stack.url("/embedder/v1/embeddings"), json=body, timeout=120
        ).status_code

    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(post, range(96)))
    assert codes == [200] * 96
    text = scrape_until(stack, lambda t: batches_over_one(t) > before)
    assert batches_over_one(text) > before, "no batch larger than 1 under 32 concurrent clients"


def test_gantry_series_exist_with_their_labels(stack: ServeStack) -> None:
    bad_json = {"content-type": "application/json"}  # without it FastAPI answers 422, not 400
    requests.post(stack.url("/embedder/v1/embeddings"), data=b"{", headers=bad_json, timeout=60)
    text = scrape_until(
        stack,
        lambda t: (
            bool(samples(t, "ray_gantry_requests_total", code="400", **EMBEDDER))
            and bool(samples(t, "ray_gantry_model_ready", service="classifier"))
        ),
    )
    for name in gantry_metrics.SERIES:
        assert name in names(text), f"{name} missing from the scrape"
    ok = samples(text, "ray_gantry_requests_total", outcome="success", code="200", **EMBEDDER)
    assert ok and ok[0].labels["deployment"] == "Embedder"
    assert samples(text, "ray_gantry_requests_total", outcome="client_error", code="400")
    ready = samples(text, "ray_gantry_model_ready", **EMBEDDER)
    assert ready and ready[0].value == 1 and ready[0].labels["device"] == "cpu"
    v2 = samples(text, "ray_gantry_model_ready", service="embedder", version="v2")
    assert v2 and v2[0].labels["application"] == "canary-embedder-v2"
    latency = samples(text, "ray_gantry_inference_latency_seconds_count", **EMBEDDER)
    assert latency and latency[0].value > 0
    for name in gantry_metrics.RAY_SERVE_SERIES:
        assert name in names(text), f"Ray Serve series {name} missing"

"""Property-based fuzzing of each service against its own OpenAPI document (schemathesis CLI):
no 5xx, responses conform to the documented statuses and schemas, and the replica lives on."""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests.services.promtext import samples
from tests.services.raylocal import VENV_BIN
from tests.services.stack import ServeStack

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance"
CHECKS += ",response_schema_conformance"

pytestmark = pytest.mark.e2e  # real local Ray + Serve (session fixture: conftest.py)
# Seconds of fuzzing per service. Each run stops here before its 50 examples per operation (large
# generated bodies are real model work on one core); 75 s cost the suite 2.5 min for both.
MAX_TIME_S = 40


@pytest.mark.parametrize("service", ["embedder", "classifier"])
def test_fuzzed_requests_never_get_5xx(stack: ServeStack, service: str) -> None:
    base = stack.url(f"/{service}")
    replicas_before = replicas(stack, service)
    assert replicas_before
    result = subprocess.run(
        [
            str(VENV_BIN / "st"), "run", f"{base}/openapi.json", "--url", base,
            "--checks", CHECKS, "--max-examples", "50", "--seed", "1", "--workers", "2",
            "--request-timeout", "60", "--max-time", str(MAX_TIME_S), "--no-shrink",
            "--warnings", "off", "--suppress-health-check", "all",
        ],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    assert "test cases" in result.stdout.lower() or "generated" in result.stdout.lower()
    assert requests.get(f"{base}/ready", timeout=30).status_code == 200
    assert replicas(stack, service) == replicas_before, "a replica was replaced during fuzzing"


def replicas(stack: ServeStack, service: str) -> set[str]:
    """Ids of the service's v1 replicas that report a loaded model (a restart adds a new id)."""
    text = stack.metrics()
    found = samples(text, "ray_gantry_model_ready", service=service, version="v1")
    return {s.labels["replica"] for s in found if s.value == 1}

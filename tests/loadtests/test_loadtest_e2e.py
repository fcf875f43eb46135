"""`gantry loadtest` end to end on a real sandbox (Ray, Ray Serve, Prometheus, the embedder).

The smoke scenario runs in `make test`; the long ones (marked `loadtest`) in `make loadtest`.
The sandbox runs the embedder only, with the stack's timings shortened through config
(Serve's downscale delay, the canary interval, Ray's node idle timeout), never through a test
mode in code. Each scenario runs through the real command and is judged by its own verdict.
Order matters: the faulty canary (v2) is rolled back, so v1 is still stable when the next test
rolls out v2 and expects it promoted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GANTRY = [sys.executable, "-c", "from gantry.cli import main; main()"]

# Short timings for a test sandbox, as stack-config overrides (same keys as service.yaml).
EMBEDDER_OVERRIDES = {
    "autoscaling": {"scale_down": {"stabilization_s": 15}},  # s before removing a replica
    "canary": {
        "interval": "8s",
        "threshold": 2,
        "stepWeight": 25,
        "maxWeight": 50,
        "metrics": [
            {"name": "request-success-rate", "interval": "15s"},
            {"name": "request-duration", "interval": "15s"},
            {"name": "serve-error-rate", "thresholdRange": {"max": 1}, "interval": "15s"},
        ],
    },
}

pytestmark = pytest.mark.e2e


class Sandbox(NamedTuple):
    state: Path  # its state dir
    stack: Path  # the stack file it was started from


def _gantry(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GANTRY, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A running sandbox with the embedder. Stopped after the module."""
    root = tmp_path_factory.mktemp("lt")
    doc = yaml.safe_load((REPO / "Pulumi.sandbox.yaml").read_text())
    doc["config"]["gantry:services"] = {"embedder": {"overrides": EMBEDDER_OVERRIDES}}
    doc["config"]["gantry:sandbox"] = {**(doc["config"].get("gantry:sandbox") or {}),
                                       "idle_timeout_s": 15}  # fmt: skip
    stack = root / "Pulumi.loadtest.yaml"
    stack.write_text(yaml.safe_dump(doc))
    state = root / "s"
    try:
        up = _gantry("sandbox", "up", "--state-dir", str(state), "--stack-file", str(stack),
                     timeout=420)  # fmt: skip
        assert up.returncode == 0, f"sandbox up failed:\n{up.stdout}\n{up.stderr}"
        yield Sandbox(state, stack)
    finally:
        _gantry("sandbox", "down", "--state-dir", str(state), timeout=120)


def loadtest(sandbox: Sandbox, scenario: str, out: Path, timeout: float) -> dict[str, Any]:
    args = ["--state-dir", str(sandbox.state), "--stack-file", str(sandbox.stack)]
    res = _gantry("loadtest", scenario, *args, "--out", str(out), timeout=timeout)
    summary = json.loads((out / "summary.json").read_text())
    summary["exit_code"], summary["output"] = res.returncode, res.stdout + res.stderr
    return summary


def checks(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in summary["checks"]}


def test_smoke_scenario_passes_with_every_response_valid(sandbox: Sandbox, tmp_path: Path) -> None:
    s = loadtest(sandbox, "smoke", tmp_path, timeout=120)
    assert s["exit_code"] == 0, s["output"]
    assert s["passed"] and s["failures"] == 0 and s["requests"] > 10
    assert s["observer"].startswith("sandbox")
    assert "PASSED" in s["output"]
    rows = [json.loads(x) for x in (tmp_path / "timeline.jsonl").read_text().splitlines()]
    # The observer saw the embedder's version and the pools.
    assert any(r["replicas"] and r["replicas"].get("v1", 0) >= 1 for r in rows)
    assert any(r["nodes"] and "cpu" in r["nodes"] for r in rows)
    assert any(r["weights"] == {"v1": 100.0} for r in rows)
    assert (tmp_path / "locust.html").stat().st_size > 0
    assert (tmp_path / "timeline.png").stat().st_size > 0


@pytest.mark.loadtest
def test_step_load_scales_the_embedder_out_and_back_in(sandbox: Sandbox, tmp_path: Path) -> None:
    s = loadtest(sandbox, "step", tmp_path, timeout=330)
    c = checks(s)
    assert c["scale_out_within_s"]["passed"], c
    assert c["max_replicas_reached"]["measured"] >= 2
    assert c["scale_in_within_s"]["passed"], c
    assert c["failed_requests"]["measured"] == 0
    # p95 is judged and reported but not asserted here: on a shared 2-core CI box it measures the
    # neighbours (5-9 s seen with 16 users while other suites ran), not Gantry.
    assert (
        c["p99_within_slo"]["measured"] is not None
        or "never recovered" in c["p99_within_slo"]["detail"]
    )


@pytest.mark.loadtest
def test_a_faulty_canary_is_rolled_back(sandbox: Sandbox, tmp_path: Path) -> None:
    s = loadtest(sandbox, "canary-fault", tmp_path, timeout=400)
    assert checks(s)["rollout"]["measured"] == "rolled_back", s["output"]
    assert s["exit_code"] == 0 and s["passed"], s["output"]


@pytest.mark.loadtest
def test_rollout_to_v2_under_load_promotes_without_a_failed_request(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    s = loadtest(sandbox, "rollout", tmp_path, timeout=400)
    c = checks(s)
    assert c["rollout"]["measured"] == "promoted", s["output"]
    assert c["failed_requests"]["measured"] == 0
    assert s["exit_code"] == 0 and s["passed"], s["output"]

"""`gantry loadtest` end to end on a real sandbox (Ray, Ray Serve, Prometheus, the embedder).

The smoke scenario runs in `make test`; the long ones (marked `loadtest`: autoscaling, rollouts
and the chaos scenarios) in `make loadtest`. The sandbox is the session's shared one
(tests/sandbox/e2e_sandbox.py), its timings shortened through config, never through a test mode
in code. Each scenario runs through the real command and is judged by its own verdict.
Order matters: the faulty canary and the canary without metrics (v2) are rolled back, so v1 is
still stable when the rollout test rolls out v2 and expects it promoted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GANTRY = [sys.executable, "-c", "from gantry.cli import main; main()"]
SCENARIOS = REPO / "loadtests" / "scenarios"

pytestmark = pytest.mark.e2e


class Sandbox(NamedTuple):
    state: Path  # its state dir
    stack: Path  # the stack file it was started from


def _gantry(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GANTRY, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def sandbox(e2e_sandbox: Any) -> Sandbox:
    """The session's running sandbox (tests/sandbox/e2e_sandbox.py): both services, short
    canary and autoscaling timings."""
    if not e2e_sandbox.running:
        e2e_sandbox.up()
    return Sandbox(e2e_sandbox.paths.root, e2e_sandbox.stack)


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
def test_prometheus_down_mid_rollout_rolls_back_and_up_restarts_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # The shipped scenario kills Prometheus between the canary's checks at the shipped 25 s
    # interval; this sandbox's 8 s canary could be promoted by then. Killed right after the
    # rollout started instead, the canary's metrics never show: the driver gives up after
    # ready_timeout_s and rolls back (the checks failing closed: test_rollout_driver.py).
    scenario = yaml.safe_load((SCENARIOS / "prometheus-down.yaml").read_text())
    scenario["fault"]["at_s"] = scenario["rollout"]["at_s"] + 1
    variant = tmp_path / "prometheus-down.yaml"
    variant.write_text(yaml.safe_dump(scenario))
    s = loadtest(sandbox, str(variant), tmp_path / "run", timeout=420)
    c = checks(s)
    assert c["rollout"]["measured"] == "rolled_back", s["output"]  # no promotion without data
    assert c["failed_requests"]["measured"] == 0
    assert s["exit_code"] == 0 and s["passed"], s["output"]
    up = _gantry("sandbox", "up", "--state-dir", str(sandbox.state), "--stack-file",
                 str(sandbox.stack), timeout=120)  # fmt: skip
    assert up.returncode == 0 and "Restarting the sandbox's prometheus" in up.stdout, up.stdout


@pytest.mark.loadtest
def test_rollout_to_v2_under_load_promotes_without_a_failed_request(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    s = loadtest(sandbox, "rollout", tmp_path, timeout=400)
    c = checks(s)
    assert c["rollout"]["measured"] == "promoted", s["output"]
    assert c["failed_requests"]["measured"] == 0
    assert s["exit_code"] == 0 and s["passed"], s["output"]


@pytest.mark.loadtest
@pytest.mark.parametrize("scenario", ["replica-kill", "node-loss", "overload"])
def test_chaos_scenario_passes(sandbox: Sandbox, tmp_path: Path, scenario: str) -> None:
    s = loadtest(sandbox, scenario, tmp_path, timeout=400)
    assert s["exit_code"] == 0 and s["passed"], s["output"]
    assert (tmp_path / "timeline.png").stat().st_size > 0


@pytest.mark.loadtest
def test_jobs_share_the_pool_with_a_scaling_service(sandbox: Sandbox, tmp_path: Path) -> None:
    """digits trains while the classifier scales out on its pool; embeddings reclaims ml-serving's
    quota, preempting digits, which resumes from its checkpoint."""
    s = loadtest(sandbox, "jobs-share-pools", tmp_path, timeout=600)
    assert s["exit_code"] == 0 and s["passed"], s["output"]
    digits = checks(s)["job digits"]
    assert "preempted 1x" in digits["measured"] and "resumed from" in digits["measured"]


@pytest.mark.loadtest
def test_kill_9_of_the_ray_head_is_recovered_by_up(sandbox: Sandbox) -> None:
    """The last test: it replaces the session's sandbox with a new one."""
    from sandbox.state import Paths
    from tests.sandbox.sandbox_helpers import ss_ports

    old = Paths(sandbox.state).read_state()
    assert old is not None
    head = next(p for p in old.procs if p.name == "ray-head")
    os.kill(head.pid, signal.SIGKILL)
    st = _gantry("sandbox", "status", "--state-dir", str(sandbox.state), timeout=60)
    assert st.returncode == 1 and f"ray-head (pid {head.pid}) exited" in st.stderr, st.stderr
    up = _gantry("sandbox", "up", "--state-dir", str(sandbox.state), "--stack-file",
                 str(sandbox.stack), timeout=420)  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    assert "Clearing the previous sandbox" in up.stdout
    from sandbox import procs

    assert procs.members(old.procs) == []  # nothing of the old sandbox is left
    new = Paths(sandbox.state).read_state()
    assert new is not None and new.ready
    listening = ss_ports()
    stale = {p for n, p in old.ports.items() if n != "replicas"} - set(new.ports.values())
    assert not stale & listening, f"old ports still listening: {sorted(stale & listening)}"

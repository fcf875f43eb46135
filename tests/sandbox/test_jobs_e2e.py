"""Jobs on the real sandbox (`gantry job`): the queue admits two teams' jobs in the order Kueue's
rule says (borrow, reclaim, resume), and the shipped training job runs to completion on the
cpu pool's Ray nodes and survives a killed worker by resuming from its checkpoint.

The sandbox is the session's shared one (e2e_sandbox.py), with the shipped teams file.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from e2e_sandbox import Sandbox
from sandbox_helpers import REPO, gantry, wait_for

from gantry.jobs import RESULT_FILE, RESUMED_FROM
from gantry.sandbox_state import JobRecord, read_jobs

pytestmark = [pytest.mark.e2e]

FIXTURE_JOBS = REPO / "tests" / "sandbox" / "fixtures" / "jobs"


@pytest.fixture
def sandbox(e2e_sandbox: Sandbox) -> Sandbox:
    if not e2e_sandbox.running:
        e2e_sandbox.up()
    return e2e_sandbox


def job(sandbox: Sandbox, *args: str, timeout: float = 120) -> str:
    r = gantry("job", *args, *sandbox.args, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def record(sandbox: Sandbox, name: str) -> JobRecord | None:
    return read_jobs(sandbox.paths.root).jobs.get(name)


def state(sandbox: Sandbox, name: str) -> str | None:
    rec = record(sandbox, name)
    return rec.state if rec else None


def started(rec: JobRecord | None) -> int:
    """How many attempts of a sleeper job really started (it writes a line per start)."""
    path = Path(rec.run_dir) / "attempts.txt" if rec else None
    return len(path.read_text().splitlines()) if path and path.exists() else 0


def test_two_teams_jobs_are_admitted_in_kueues_order(sandbox: Sandbox) -> None:
    fixtures = ["--jobs-dir", str(FIXTURE_JOBS), *sandbox.stack_args]
    try:
        # ml-research's job needs 1.5 cores: its own 1 and half a core borrowed from ml-serving.
        job(sandbox, "run", "sleeper-research", "--detach", *fixtures)
        wait_for("research started", lambda: started(record(sandbox, "sleeper-research")), 60)
        # ml-serving wants its half core back: the borrower is preempted; the owner runs first.
        out = job(sandbox, "run", "sleeper-serving", *fixtures)
        assert "succeeded" in out and "sleeper-serving: second 5" in out
        wait_for(
            "research's second start",
            lambda: started(record(sandbox, "sleeper-research")) == 2,
            60,
        )
        research = record(sandbox, "sleeper-research")
        assert research is not None
        assert [(e.state, e.reason) for e in research.events] == [
            ("queued", ""),
            ("running", ""),
            ("queued", "preempted for sleeper-serving (reclaimed by its owner)"),
            ("running", "attempt 2: resumes from its last checkpoint"),
        ]
        serving = record(sandbox, "sleeper-serving")
        assert serving is not None and serving.state == "succeeded"
        # The borrower went back to the queue before the owner ran, and ran again after it.
        preempted_at, rerun_at = research.events[2].t, research.events[3].t
        owner_ran = next(e.t for e in serving.events if e.state == "running")
        assert serving.finished_at is not None
        assert preempted_at <= owner_ran <= serving.finished_at <= rerun_at
        listing = job(sandbox, "list")
        assert "sleeper-research" in listing and "running" in listing, listing
    finally:
        gantry("job", "stop", "sleeper-research", *sandbox.args, timeout=120)
    stopped = record(sandbox, "sleeper-research")
    assert stopped is not None and stopped.state == "stopped"


def test_digits_trains_and_survives_a_killed_worker(sandbox: Sandbox) -> None:
    from ray.util.state import list_actors

    job(sandbox, "run", "digits", "--set", "epochs=4", "--detach", *sandbox.stack_args)
    rec = wait_for("digits running", lambda: state(sandbox, "digits") == "running", 60)
    rec = record(sandbox, "digits")
    assert rec is not None
    run_dir = Path(rec.run_dir)
    # After the first checkpoint, SIGKILL one Ray Train worker's process.
    wait_for("the first checkpoint", lambda: (run_dir / "metrics.jsonl").exists(), 90)
    dashboard = sandbox.state.urls["dashboard"]
    workers = [
        a
        for a in list_actors(address=dashboard, filters=[("state", "=", "ALIVE")])
        if "RayTrainWorker" in a.class_name and a.pid
    ]
    assert workers, "no live Ray Train worker"
    os.kill(workers[0].pid, signal.SIGKILL)
    killed_at = time.time()
    done = wait_for(
        "digits to end", lambda: (r := record(sandbox, "digits")) and not r.active and r, 120
    )
    assert done.state == "succeeded", done.reason
    result = json.loads((run_dir / RESULT_FILE).read_text())
    assert result[RESUMED_FROM] is not None, result  # restarted workers loaded the checkpoint
    assert result["epochs"] == 4
    print(f"digits: done {done.finished_at - killed_at:.1f} s after the kill; {result}")

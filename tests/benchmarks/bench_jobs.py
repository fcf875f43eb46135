"""Benchmark jobs on the embedded sandbox (shipped stack and teams file), as a user runs them.

Measures (issue 16's report):
- digits (Ray Train, 2 DDP workers) at `--epochs`: `gantry job run` to admitted, to the first
  committed checkpoint, to the end, its validation accuracy;
- the same with one Ray Train worker SIGKILLed right after the first checkpoint: the time lost
  (end-to-end minus the clean run) and where the new workers resumed;
- the queue's decisions with two teams: how long after a request the queue admits a job, and
  after ml-serving's request how long until ml-research's borrowing job is preempted, the owner
  runs, and the borrower runs again once the owner is done.

Run: .venv/bin/python tests/benchmarks/bench_jobs.py [--epochs 8] [--state-dir DIR]
Starts its own sandbox (own state dir, free ports) and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
GANTRY = [sys.executable, "-c", "from gantry.cli import main; main()"]
FIXTURES = REPO / "tests" / "sandbox" / "fixtures" / "jobs"

from gantry.jobs import RESULT_FILE  # noqa: E402
from gantry.sandbox_state import JobRecord, read_jobs, read_state  # noqa: E402


def gantry(*args: str, timeout: float = 600) -> str:
    r = subprocess.run([*GANTRY, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        raise SystemExit(f"gantry {' '.join(args)} failed: {r.stderr[-500:]}")
    return r.stdout


def wait(state_dir: Path, name: str, done: Any, timeout_s: float = 300) -> JobRecord:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rec = read_jobs(state_dir).jobs.get(name)
        if rec is not None and done(rec):
            return rec
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {name}")


def first(rec: JobRecord, state: str, after: float = 0.0) -> float:
    return next(e.t for e in rec.events if e.state == state and e.t >= after)


def digits(state_dir: Path, sargs: list[str], epochs: int, kill: bool) -> dict[str, Any]:
    t0 = time.time()
    gantry("job", "run", "digits", "--set", f"epochs={epochs}", "--detach", *sargs)
    rec = wait(state_dir, "digits", lambda r: r.state == "running" and r.run_dir)
    run_dir = Path(rec.run_dir)
    while not (run_dir / "metrics.jsonl").exists():  # a line: a committed checkpoint
        time.sleep(0.1)
    checkpoint_at = time.time()
    if kill:
        from ray.util.state import list_actors

        state = read_state(state_dir)
        assert state is not None
        workers = [
            a
            for a in list_actors(address=state.urls["dashboard"], filters=[("state", "=", "ALIVE")])
            if "RayTrainWorker" in a.class_name and a.pid
        ]
        os.kill(workers[0].pid, signal.SIGKILL)
    rec = wait(state_dir, "digits", lambda r: not r.active)
    result = json.loads((run_dir / RESULT_FILE).read_text())
    return {
        "state": rec.state,
        "admitted_s": round(first(rec, "running") - t0, 2),
        "first_checkpoint_s": round(checkpoint_at - t0, 2),
        "total_s": round((rec.finished_at or 0) - t0, 2),
        "val_acc": result.get("val_acc"),
        "resumed_from": result.get("resumed_from"),
        "restarts": result.get("restarts"),
    }


def two_teams(state_dir: Path, sargs: list[str]) -> dict[str, Any]:
    fixtures = ["--jobs-dir", str(FIXTURES), *sargs]
    t0 = time.time()
    gantry("job", "run", "sleeper-research", "--detach", *fixtures)
    wait(state_dir, "sleeper-research", lambda r: r.state == "running")
    time.sleep(5)
    t1 = time.time()
    gantry("job", "run", "sleeper-serving", "--detach", *fixtures)
    serving = wait(state_dir, "sleeper-serving", lambda r: not r.active)
    research = wait(state_dir, "sleeper-research", lambda r: r.attempts >= 2)
    preempted = next(e.t for e in research.events if e.reason.startswith("preempted"))
    rerun = first(research, "running", preempted)
    gantry("job", "stop", "sleeper-research", *sargs)
    return {
        "research_admitted_s": round(first(research, "running") - t0, 2),
        "serving_request_to_research_preempted_s": round(preempted - t1, 2),
        "serving_request_to_serving_running_s": round(first(serving, "running") - t1, 2),
        "serving_finished_to_research_running_again_s": round(
            rerun - (serving.finished_at or 0), 2
        ),
        "research_events": [(round(e.t - t0, 2), e.state, e.reason) for e in research.events],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--state-dir", type=Path)
    args = parser.parse_args()
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="gantry-bench-jobs-"))
    sargs = ["--state-dir", str(state_dir)]
    print(f"load average before: {os.getloadavg()}", flush=True)
    gantry("sandbox", "up", *sargs)
    try:
        out = {"clean": digits(state_dir, sargs, args.epochs, kill=False)}
        print(json.dumps(out["clean"]), flush=True)
        gantry("job", "list", *sargs)
        out["worker_killed"] = digits(state_dir, sargs, args.epochs, kill=True)
        print(json.dumps(out["worker_killed"]), flush=True)
        lost = out["worker_killed"]["total_s"] - out["clean"]["total_s"]
        out["time_lost_to_the_kill_s"] = round(lost, 2)
        out["queue"] = two_teams(state_dir, sargs)
        print(json.dumps(out, indent=2))
    finally:
        gantry("sandbox", "down", *sargs)
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Run a job's code as the engines do: `python -m <module>` from the project root with
GANTRY_JOB_RUNTIME set, as a new driver (a new Ray job) on a private local Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from gantry.jobs import JobRuntime, load_job, runtime_config
from sandbox.jobs import sandbox_runtime
from tests.conftest import stack_config
from tests.services.raylocal import LOOPBACK_ENV, REPO, VENV_BIN, LocalRay


def runtime(name: str, run_dir: Path, **overrides: Any) -> JobRuntime:
    """The runtime the sandbox hands jobs/<name> (sandbox/jobs.py), its job.yaml validated
    against the sandbox stack."""
    job = load_job(name, stack_config("sandbox"))
    return sandbox_runtime(job, run_dir, runtime_config(job, overrides))


@dataclass
class JobProcess:
    """One run of a job's driver."""

    proc: subprocess.Popen[bytes]
    log: Path
    started: float  # time.monotonic()
    started_at: float  # time.time()

    def wait(self, timeout_s: float = 120) -> float:
        """Wait for a successful exit; returns the wall time (s) since the start."""
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL)
            raise AssertionError(f"job did not finish in {timeout_s} s:\n{self.tail()}") from None
        assert rc == 0, f"job exited {rc}:\n{self.tail()}"
        return time.monotonic() - self.started

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        """What `ray job stop` does to a driver: a signal, then SIGKILL if it lingers."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def tail(self, n: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def start_job(ray: LocalRay, module: str, rt: JobRuntime, log: Path) -> JobProcess:
    env = {**os.environ, **LOOPBACK_ENV, **rt.env(), "RAY_ADDRESS": ray.address}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "python"), "-m", module],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return JobProcess(proc, log, time.monotonic(), time.time())


def wait_until(check: Callable[[], bool], job: JobProcess, timeout_s: float = 90) -> None:
    """Poll `check` (every 20 ms: epochs are short) while the job runs."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert job.proc.poll() is None, f"job exited {job.proc.returncode}:\n{job.tail()}"
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s:\n{job.tail()}"
        time.sleep(0.02)


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    """digits' metrics.jsonl (complete lines only)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(x) for x in lines if x.endswith("}")]


def registered_epoch(run_dir: Path) -> int:
    """The epoch of Ray Train's latest checkpoint: the last one its controller registered, as
    its snapshot in the run folder says (what a restarted worker group or a new job loads). A
    report() returns before that: the controller takes reports when it polls the workers."""
    path = run_dir / "checkpoints" / "checkpoint_manager_snapshot.json"
    try:
        snap = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # none yet, or being written
        return 0
    latest = snap.get("latest_checkpoint_result") or {}
    return int(latest.get("metrics", {}).get("epoch", 0))


def actor_pids(ray: LocalRay, actor: str, since: float = 0) -> list[int]:
    """Processes of this Ray (and no other) running an actor of class `actor` (their title is
    `ray::<actor>...`), started after `since` (time.time())."""
    found = []
    for pid in ray.pids():
        try:
            proc = psutil.Process(pid)
            title = " ".join(proc.cmdline())
            created = proc.create_time()
        except psutil.Error:
            continue
        if title.startswith(f"ray::{actor}") and created >= since:
            found.append(pid)
    return sorted(found)


def train_worker_pids(ray: LocalRay, since: float = 0) -> list[int]:
    return actor_pids(ray, "RayTrainWorker", since)


def wait_train_gone(ray: LocalRay, since: float, timeout_s: float = 60) -> None:
    """Wait until the Train controller and workers started after `since` have exited (Ray
    kills a job's actors once its driver is gone)."""
    deadline = time.monotonic() + timeout_s
    while actor_pids(ray, "TrainController", since) or train_worker_pids(ray, since):
        assert time.monotonic() < deadline, "a stopped job's Train actors are still running"
        time.sleep(0.1)

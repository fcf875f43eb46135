"""jobs/digits for real on a private local Ray: trains to completion with a checkpoint every
epoch, and resumes in a new Ray job on the same run dir (a preemption). Each run is the job's own
driver (`python -m jobs.digits.train`), a new Ray job, as the sandbox submits it. A worker killed
within a run is tested on the sandbox (tests/sandbox/test_jobs_e2e.py)."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gantry.jobs import RESULT_FILE, RESUMED_FROM
from tests.jobs.jobrun import (
    JobProcess,
    metrics,
    registered_epoch,
    runtime,
    start_job,
    wait_train_gone,
    wait_until,
)
from tests.services.raylocal import LocalRay

pytestmark = pytest.mark.e2e  # real local Ray (session fixture: tests/jobs/conftest.py)

MODULE = "jobs.digits.train"
EPOCHS = 3  # the test size (job.yaml ships 20): ~2 s each here, mostly Ray Train reporting


@dataclass
class Run:
    run_dir: Path
    result: dict[str, Any]
    wall_s: float  # driver start to exit, as the test saw it
    first_checkpoint_s: float  # driver start to the first committed checkpoint
    log: str  # the driver's output


def start(ray: LocalRay, run_dir: Path, logs: Path) -> JobProcess:
    n = len(list(logs.glob("*.log")))
    return start_job(ray, MODULE, runtime("digits", run_dir, epochs=EPOCHS), logs / f"{n}.log")


def first_checkpoint(job: JobProcess, run_dir: Path) -> float:
    """Wait for the first line of metrics.jsonl, which the job writes once Ray Train committed
    the epoch's checkpoint; returns the seconds since the driver started."""
    wait_until(lambda: len(metrics(run_dir)) >= 1, job)
    assert registered_epoch(run_dir) >= 1  # the line means Ray's snapshot has it
    return time.monotonic() - job.started


def result(run_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((run_dir / RESULT_FILE).read_text())
    return out


@pytest.fixture(scope="module")
def fresh(job_ray: LocalRay, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One undisturbed run: the reference for the others."""
    run_dir, logs = tmp_path_factory.mktemp("digits-fresh"), tmp_path_factory.mktemp("logs")
    job = start(job_ray, run_dir, logs)
    first = first_checkpoint(job, run_dir)
    wall = job.wait()
    return Run(run_dir, result(run_dir), wall, first, job.tail(100_000))


def test_trains_to_completion_with_a_checkpoint_every_epoch(
    fresh: Run, timings: dict[str, float]
) -> None:
    import torch

    timings["digits: driver start to the first committed checkpoint"] = fresh.first_checkpoint_s
    timings["digits: total (driver start to exit)"] = fresh.wall_s
    r = fresh.result
    assert r["epochs"] == EPOCHS
    assert (r[RESUMED_FROM], r["restarts"]) == (None, 0)
    assert r["val_acc"] >= 0.85, r  # ~0.94 after 3 epochs; ~0.97 at the shipped 20
    assert [m["epoch"] for m in metrics(fresh.run_dir)] == list(range(1, EPOCHS + 1))
    assert 0 < r["seconds_to_first_checkpoint"] <= r["seconds_total"]
    # One checkpoint per epoch, the newest `keep_checkpoints` (2) kept, with Ray's snapshot.
    ray_run = fresh.run_dir / "checkpoints"
    assert r["checkpoints"] == [f"epoch-{e:04d}" for e in (EPOCHS - 1, EPOCHS)]
    assert sorted(p.name for p in ray_run.glob("epoch-*")) == r["checkpoints"]
    assert (ray_run / "checkpoint_manager_snapshot.json").is_file()
    state = torch.load(ray_run / f"epoch-{EPOCHS:04d}" / "state.pt", weights_only=False)
    assert state["epoch"] == EPOCHS
    assert {"model", "optimizer", "metrics"} <= set(state)


def test_prints_one_progress_line_per_epoch(fresh: Run) -> None:
    lines = [x for x in fresh.log.splitlines() if f"/{EPOCHS} loss " in x]
    assert len(lines) == EPOCHS, lines
    for epoch, line in enumerate(lines, 1):
        assert f"epoch {epoch}/{EPOCHS} loss " in line and " val_acc " in line


def test_a_new_job_on_the_same_run_dir_resumes_from_the_last_checkpoint(
    job_ray: LocalRay, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A preemption: the driver is stopped as `ray job stop` does (SIGTERM) after the first
    checkpoint, then the job is submitted again with the same run dir."""
    run_dir, logs = tmp_path_factory.mktemp("digits-preempted"), tmp_path_factory.mktemp("logs")
    first = start(job_ray, run_dir, logs)
    first_checkpoint(first, run_dir)
    first.stop(signal.SIGTERM)
    wait_train_gone(job_ray, since=first.started_at)  # no later checkpoint can register
    assert not (run_dir / RESULT_FILE).exists()
    registered = registered_epoch(run_dir)
    assert 1 <= registered < EPOCHS, "the run finished before it was stopped"

    second = start(job_ray, run_dir, logs)
    second.wait()
    r = result(run_dir)
    assert r["epochs"] == EPOCHS
    assert r[RESUMED_FROM] == registered  # Ray's latest checkpoint, not epoch 0
    assert r["worker_groups"][0]["resumed_from"] == registered and r["restarts"] == 0
    mine = [m["epoch"] for m in metrics(run_dir) if m["job"] == r["ray_job_id"]]
    assert mine == list(range(registered + 1, EPOCHS + 1))  # the counter continues
    assert f"(resumed from epoch {registered})" in second.tail(100_000)

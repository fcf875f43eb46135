"""`gantry job` against the sandbox: a job.yaml as a queued Ray job, and the queue's controller.

A job's pod sets map onto Ray as the services' pods do (sandbox/__init__.py): its head is the
Ray job's driver, on the Ray head (the first cpu pool) with `entrypoint_num_cpus` = head.cpu; its
workers are Ray Train workers whose resources carry the pool's custom resource (`pool:<name>`),
so they land on that pool's nodes, which Ray's autoscaler adds as for a replica. GPUs are the
sandbox's fake ones: workers request Ray's GPU resource but run on CPU (`cuda` False, gloo).

The CLI never holds the queue: it drops a request in `<state>/jobs/requests/` and reads
`<state>/jobs/queue.json`, both handled by the controller (sandbox/jobqueue.py), which it starts
as a Ray job when none runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gantry import project
from gantry.admission import queues_from_teams
from gantry.jobs import JobRuntime, JobSpec, head_pool, pod_sets, requests_by_pool
from gantry.sandbox_state import JOBS_DIR, JobRecord, SandboxState, read_jobs
from gantry.stack import GantryConfig
from gantry.teams import PRIORITY_CLASSES
from sandbox.errors import SandboxError
from sandbox.jobqueue import RAY_FINISHED, requests_dir
from sandbox.raycluster import pool_resource
from sandbox.retry import until

CONTROLLER_METADATA = {"gantry": "job-queue"}  # how the controller's Ray job is found
CONTROLLER_START_S = 30  # s for a new controller to write its first queue.json
# s without a new queue.json after which a controller counts as gone (it writes every tick, 1 s)
CONTROLLER_STALE_S = 10
POLL_S = 0.5  # s between reads of queue.json


def run_dir(state_dir: Path, name: str, run: int) -> Path:
    return state_dir / JOBS_DIR / "runs" / name / f"run-{run}"


def sandbox_runtime(job: JobSpec, run_dir: Path, config: Mapping[str, Any]) -> JobRuntime:
    """What the sandbox hands a job's code: its workers placed by their pool's resource, GPUs
    reserved as Ray's `GPU` but no CUDA (the sandbox's GPUs are Ray resources only)."""
    w = job.workers
    resources = {"CPU": w.cpu, pool_resource(job.pool): 1.0}
    if w.gpus:
        resources["GPU"] = float(w.gpus)
    return JobRuntime(
        name=job.name,
        run_dir=str(run_dir),
        config=dict(config),
        workers=w.replicas,
        worker_resources=resources,
        cuda=False,
        max_failures=w.max_failures,
    )


def record(
    job: JobSpec, cfg: GantryConfig, state_dir: Path, config: Mapping[str, Any]
) -> JobRecord:
    """The queue entry of a new run of `job`, with its Ray submission."""
    old = read_jobs(state_dir).jobs.get(job.name)
    run = old.run + 1 if old else 1
    head, workers = pod_sets(job, head_pool(cfg))
    runtime = sandbox_runtime(job, run_dir(state_dir, job.name, run), config)
    submit = {
        "entrypoint": f"{sys.executable} -m {job.module}",
        "entrypoint_num_cpus": job.head.cpu,
        "entrypoint_resources": {pool_resource(head.pool): 1.0},
        "runtime_env": {"env_vars": {**runtime.env(), "PYTHONPATH": str(project.root())}},
        "metadata": {"gantry": "job", "team": job.team},
    }
    return JobRecord(
        name=job.name,
        team=job.team,
        pool=job.pool,
        priority=job.priority,
        priority_value=PRIORITY_CLASSES[job.priority][0],
        requests=requests_by_pool((head, workers)),
        run=run,
        run_dir=runtime.run_dir,
        queued_at=time.time(),
        max_run_s=job.max_run_s,
        submit=submit,
    )


def _request(state_dir: Path, body: dict[str, Any]) -> None:
    folder = requests_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.time_ns()}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)  # the controller reads only whole *.json files


def enqueue(state_dir: Path, rec: JobRecord, cfg: GantryConfig) -> None:
    """Ask the controller to queue a run; refused here when the job is still active."""
    old = read_jobs(state_dir).jobs.get(rec.name)
    if old is not None and old.active:
        raise SandboxError(
            f"job {rec.name} is {old.state} (run {old.run})",
            f"wait for it, or `gantry job stop {rec.name}`",
        )
    queues = {
        team: {"nominal": q.nominal, "borrowing": q.borrowing}
        for team, q in queues_from_teams(cfg.platform.teams).items()
    }
    _request(state_dir, {"op": "run", "record": rec.model_dump(mode="json"), "queues": queues})


def request_stop(state_dir: Path, name: str) -> None:
    rec = read_jobs(state_dir).jobs.get(name)
    if rec is None:
        raise SandboxError(f"no job {name} in the sandbox's queue", "`gantry job list` shows it")
    if not rec.active:
        raise SandboxError(f"job {name} has already {rec.state}")
    _request(state_dir, {"op": "stop", "name": name})


def client(state: SandboxState) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(state.urls["dashboard"])


def ensure_controller(state: SandboxState, jobs_client: Any) -> str:
    """The live controller's Ray submission id. A controller is live while it rewrites
    queue.json (every tick); otherwise any left of it is stopped, so that two never run, and a
    new one is started. Requests wait in their folder meanwhile: none is lost."""
    state_dir = Path(state.state_dir)
    queue = read_jobs(state_dir)
    if queue.controller and time.time() - queue.updated_at < CONTROLLER_STALE_S:
        return queue.controller
    for info in jobs_client.list_jobs():
        ended = str(info.status).endswith(tuple(RAY_FINISHED))
        if info.metadata == CONTROLLER_METADATA and not ended:
            jobs_client.stop_job(info.submission_id)
    controller_id = f"gantry-job-queue-{time.time_ns()}"
    jobs_client.submit_job(
        submission_id=controller_id,
        entrypoint=(
            f"{sys.executable} -m sandbox.jobqueue {state_dir} "
            f"{state.urls['dashboard']} {controller_id}"
        ),
        entrypoint_num_cpus=0,
        runtime_env={"env_vars": {"PYTHONPATH": str(project.root())}},
        metadata=CONTROLLER_METADATA,
    )
    until(
        lambda: read_jobs(state_dir).controller == controller_id,
        CONTROLLER_START_S,
        "the job queue's controller to start",
        POLL_S,
        detail=lambda: f"its log: {jobs_client.get_job_logs(controller_id)[-300:]!r}",
    )
    return controller_id


def wait_for(
    state_dir: Path, name: str, done: Callable[[JobRecord], bool], timeout_s: float
) -> JobRecord:
    """Poll queue.json until `done(record)`; that record."""

    def probe() -> JobRecord | None:
        rec = read_jobs(state_dir).jobs.get(name)
        return rec if rec is not None and done(rec) else None

    rec = until(probe, timeout_s, f"job {name}", POLL_S)
    assert rec is not None  # until returns only a truthy result
    return rec

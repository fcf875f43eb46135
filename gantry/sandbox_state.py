"""A running sandbox as other tools see it: its `state.json` and how its Serve apps are named.

The sandbox (sandbox/) writes this; observers (the load tests, `gantry sandbox status`) read it
without importing the sandbox. Field by field, see sandbox/__init__.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

DEFAULT_STATE_DIR = Path(".gantry/sandbox")
STATE_FILE = "state.json"
ROUTING_FILE = "routing.json"
# The faults `gantry sandbox fault` injects (sandbox/faults.py), which the chaos scenarios name.
FaultKind = Literal["replica-kill", "node-loss", "prometheus-down"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


class Proc(BaseModel):
    """A process Gantry started; `down` stops it and every process of its session (`sid`)."""

    name: str
    pid: int
    create_time: float  # psutil's create_time: guards against a recycled PID


class SandboxState(BaseModel):
    """The contents of `state.json`."""

    state_dir: str
    ray_temp_dir: str
    gcs_address: str
    ports: dict[str, int]  # gcs, dashboard, serve, prometheus, ray_client, metrics, agent, ...
    urls: dict[str, str]  # serve, dashboard, prometheus, serve_api, nodes_api
    routes: dict[str, str]  # service -> its URL prefix at the gateway (`<urls.serve>/<service>`)
    procs: list[Proc]
    started_at: float
    ready: bool = False


def read_state(state_dir: Path) -> SandboxState | None:
    """The state of the sandbox whose state directory is `state_dir`; None if it never ran."""
    try:
        return SandboxState.model_validate_json((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None


def app_name(service: str, version: str) -> str:
    """The Serve application that runs one version of a service (e.g. `embedder-v2`)."""
    return f"{service}-{version}"


class ServiceRouting(BaseModel):
    """Which versions of a service run and how traffic is split (state in routing.json)."""

    stable: str  # version serving (100 - canary_weight) % of traffic
    canary: str | None = None  # version under analysis, if a rollout runs
    canary_weight: int = Field(0, ge=0, le=100)  # percent
    # Merged over each version's serve.yaml user_config, e.g. {"faults": {"error_rate": 0.5}}
    # (test-only) from `gantry rollout --user-config`; a promoted canary keeps its own.
    canary_user_config: dict[str, Any] = {}
    stable_user_config: dict[str, Any] = {}


class Routing(BaseModel):
    services: dict[str, ServiceRouting]

    @classmethod
    def read(cls, path: Path) -> Routing:
        return cls.model_validate_json(path.read_text())

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        tmp.replace(path)


def read_routing(state_dir: Path) -> Routing:
    """Which versions of each service serve, and the canary weights (`routing.json`)."""
    return Routing.read(state_dir / ROUTING_FILE)


# ---------------------------------------------------------------- the job queue (`gantry job`)

JOBS_DIR = "jobs"  # under the state directory: queue.json, requests/, runs/<job>/run-<n>/
JOB_QUEUE_FILE = "queue.json"
JobState = Literal["queued", "running", "succeeded", "failed", "stopped"]
FINISHED: tuple[JobState, ...] = ("succeeded", "failed", "stopped")


class JobEvent(BaseModel):
    """One change of a job's state, for `gantry job list` and the scenario reports."""

    t: float  # unix time, s
    state: JobState
    reason: str = ""


class JobRecord(BaseModel):
    """One job in the sandbox's queue: the latest run of a `jobs/<name>`."""

    name: str
    team: str
    pool: str  # the workers' pool
    priority: str  # WorkloadPriorityClass name
    priority_value: int
    requests: dict[str, dict[str, float]]  # pool -> cpu/memory_gib/gpus, what admission counts
    run: int  # 1, 2, ...: each `gantry job run` of a finished job starts a new run
    run_dir: str  # checkpoints and outputs of this run, kept across preemptions
    state: JobState = "queued"
    reason: str = ""  # why it waits, was preempted, failed or stopped
    attempts: int = 0  # admissions of this run (1 + preemptions)
    submission_id: str | None = None  # the Ray job of the current attempt
    queued_at: float  # s: its place in the queue (reset when preempted)
    admitted_at: float | None = None
    started_at: float | None = None  # first admission of this run (max_run_s counts from here)
    finished_at: float | None = None
    max_run_s: int
    submit: dict[str, Any]  # Ray Jobs API submission: entrypoint, resources, runtime_env
    events: list[JobEvent] = []

    @property
    def active(self) -> bool:
        return self.state not in FINISHED


class JobQueueFile(BaseModel):
    """`<state>/jobs/queue.json`, written by the queue's controller after every tick."""

    controller: str | None = None  # the controller's Ray submission id
    updated_at: float = 0.0
    # Each team's queue (gantry.admission.Queue's fields), from the stack of the last `job run`.
    queues: dict[str, dict[str, Any]] = {}
    jobs: dict[str, JobRecord] = {}


def read_jobs(state_dir: Path) -> JobQueueFile:
    """The sandbox's job queue as its controller last wrote it (empty if none ran)."""
    try:
        raw = (state_dir / JOBS_DIR / JOB_QUEUE_FILE).read_text()
    except FileNotFoundError:
        return JobQueueFile()
    return JobQueueFile.model_validate_json(raw)

"""Batch and training jobs: `jobs/<name>/job.yaml`, one folder per job (like services/).

A job is a Ray program (`module`, run as `python -m <module>`) with a head (its driver) and a
group of workers. The same file is read by both engines:

- the cluster (infra/jobs/): a KubeRay `RayJob` queued by Kueue in the team's LocalQueue;
- the sandbox (sandbox/jobs/): the Ray Jobs API behind a queue that applies Kueue's rule
  (gantry/admission.py).

Where the pods go: the head on the stack's first cpu pool (the system pool, as the sandbox's
Ray head), the workers on the job's `pool`. What the job code gets from its engine is one
environment variable, `GANTRY_JOB_RUNTIME` (a `JobRuntime` as JSON): the job's config, its run
directory (checkpoints and outputs; the same across preemptions, so a resumed job finds its
checkpoints) and its workers' Ray resources, and whether its GPUs are real (`cuda`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from gantry import project
from gantry.errors import ConfigError
from gantry.stack import GantryConfig
from gantry.validation import DnsName, KeyedError, NonNegInt, StrictModel, format_error

JOB_FILE = "job.yaml"
RUNTIME_ENV = "GANTRY_JOB_RUNTIME"  # the JobRuntime, as JSON, in the job's environment
# What a job writes into its run directory as it ends: a JSON object of its results, with
# RESUMED_FROM = the checkpoint its last attempt resumed from (e.g. an epoch), or null.
RESULT_FILE = "result.json"
RESUMED_FROM = "resumed_from"
# Priorities a job may take (gantry/teams.py PRIORITY_CLASSES): serving's is for services only,
# so that a job never preempts a serving replica.
JobPriority = Literal["gantry-batch", "gantry-preemptible"]
# Resources of a pod set, in the teams file's units (gantry/teams.py PoolQuota's keys).
RESOURCES = ("cpu", "memory_gib", "gpus")


class Head(StrictModel):
    """The job's head: Ray's head node on a cluster (the driver runs there)."""

    cpu: Annotated[float, Field(gt=0)] = 1  # cores requested
    memory_gib: Annotated[float, Field(gt=0)] = 2  # GiB requested (= limit)


class Workers(StrictModel):
    """The job's workers: one Ray worker node (pod) per replica, each running one Ray Train
    worker (or Ray Data task)."""

    replicas: Annotated[int, Field(ge=1)] = 1  # workers
    cpu: Annotated[float, Field(gt=0)] = 1  # cores per worker
    memory_gib: Annotated[float, Field(gt=0)] = 2  # GiB per worker (= limit)
    gpus: NonNegInt = 0  # GPUs per worker (NCCL between GPUs, gloo on CPUs)
    # Worker failures a run recovers from by restarting its workers from the last checkpoint
    # (Ray Train's FailureConfig.max_failures).
    max_failures: NonNegInt = 3


class Image(StrictModel):
    """The job's container image on a cluster (relative paths: to jobs/<name>/)."""

    repository: str = "gantry/jobs"  # image name without registry or tag
    dockerfile: str = "../Dockerfile"  # one image for every job of this repo


class JobSpec(StrictModel):
    """`jobs/<name>/job.yaml`."""

    name: DnsName  # the folder's name
    directory: Path  # resolved by load_job
    description: str = ""
    team: DnsName  # its team in platform/teams.yaml: the namespace and queue it runs in
    pool: DnsName  # the workers' pool (stack `pools`)
    priority: JobPriority = "gantry-batch"
    # The job's code, run as `python -m <module>` from the project root.
    module: Annotated[str, Field(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")]
    image: Image = Image()
    head: Head = Head()
    workers: Workers = Workers()
    max_run_s: Annotated[int, Field(gt=0)] = 3600  # s; stopped and failed after (activeDeadline)
    # What the job writes, relative to its run directory (shown by `gantry job list`).
    outputs: list[str] = []
    config: dict[str, Any] = {}  # handed to the job's code (JobRuntime.config)

    @model_validator(mode="after")
    def _outputs(self) -> JobSpec:
        for i, out in enumerate(self.outputs):
            if out.startswith("/") or ".." in Path(out).parts:
                raise KeyedError(f"outputs[{i}]", f"{out!r} must stay inside the run directory")
        return self


@dataclass(frozen=True)
class PodSet:
    """Pods of one shape on one pool (Kueue's podSet): what admission counts."""

    name: str  # head | workers
    pool: str
    count: int
    per_pod: Mapping[str, float]  # RESOURCES

    def total(self) -> dict[str, float]:
        return {r: self.count * self.per_pod.get(r, 0.0) for r in RESOURCES}


def head_pool(cfg: GantryConfig) -> str:
    """Where every job's head runs: the stack's first cpu pool (the system pool)."""
    return next(p.name for p in cfg.pools if p.kind == "cpu")


def pod_sets(job: JobSpec, head_on: str) -> tuple[PodSet, PodSet]:
    """The job's head and workers as admission counts them."""
    h, w = job.head, job.workers
    return (
        PodSet("head", head_on, 1, {"cpu": h.cpu, "memory_gib": h.memory_gib, "gpus": 0}),
        PodSet(
            "workers",
            job.pool,
            w.replicas,
            {"cpu": w.cpu, "memory_gib": w.memory_gib, "gpus": float(w.gpus)},
        ),
    )


def requests_by_pool(sets: tuple[PodSet, ...]) -> dict[str, dict[str, float]]:
    """Sum of the pod sets' requests per pool."""
    out: dict[str, dict[str, float]] = {}
    for s in sets:
        pool = out.setdefault(s.pool, dict.fromkeys(RESOURCES, 0.0))
        for r, v in s.total().items():
            pool[r] += v
    return out


class JobRuntime(BaseModel):
    """What the job's code is handed by its engine (env GANTRY_JOB_RUNTIME)."""

    name: str
    run_dir: str  # checkpoints and outputs; the same for every attempt of one run
    config: dict[str, Any] = {}
    workers: int  # Ray Train workers
    # Each worker's Ray resources: CPU, GPU (the pool's GPUs), and in the sandbox the pool's
    # custom resource that places it on that pool's nodes.
    worker_resources: dict[str, float]
    # Real GPUs: CUDA tensors and NCCL. False on CPUs and on the sandbox's fake GPUs, which are a
    # Ray resource only (a worker still reserves `GPU` in worker_resources there).
    cuda: bool
    max_failures: int

    @property
    def backend(self) -> str:
        """torch.distributed's backend: NCCL between GPUs, gloo between CPUs."""
        return "nccl" if self.cuda else "gloo"

    def env(self) -> dict[str, str]:
        return {RUNTIME_ENV: self.model_dump_json()}


def job_runtime(environ: Mapping[str, str] | None = None) -> JobRuntime:
    """The runtime the engine handed this process (inside a job's code)."""
    raw = (environ if environ is not None else os.environ).get(RUNTIME_ENV)
    if raw is None:
        raise ConfigError(
            f"{RUNTIME_ENV} is not set",
            "run a job with `gantry job run NAME` (sandbox) or as its RayJob (cluster)",
        )
    return JobRuntime.model_validate_json(raw)


def jobs_dir() -> Path:
    return project.root() / "jobs"


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{project.shown(path)} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(
            f"{project.shown(path)}: not valid YAML: {err}".replace("\n", " ")
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{project.shown(path)}: must be a mapping")
    return doc


def load_job(name: str, cfg: GantryConfig, directory: Path | None = None) -> JobSpec:
    """`jobs/<name>/job.yaml`, validated against the stack: its team exists and may use its
    pool, and its workers fit one node of that pool. ConfigError names the file and key."""
    folder = (directory or jobs_dir()) / name
    path = folder / JOB_FILE
    shown = project.shown(path)
    if not path.is_file():
        known = sorted(p.parent.name for p in (directory or jobs_dir()).glob(f"*/{JOB_FILE}"))
        raise ConfigError(f"no job {name!r} ({shown} does not exist); jobs: {known}")
    raw = _read(path)
    if "name" in raw and raw["name"] != name:
        raise ConfigError(f"{shown}: name: {raw['name']!r} differs from the folder {name!r}")
    try:
        job = JobSpec.model_validate({**raw, "name": name, "directory": folder})
    except ValidationError as err:
        raise ConfigError(format_error(err, "\0").replace("\0:", f"{shown}: ", 1)) from None
    teams = {t.name: t for t in cfg.platform.teams.teams}
    team = teams.get(job.team)
    if team is None:
        raise ConfigError(f"{shown}: team: {job.team!r} is not a team ({sorted(teams)})")
    if job.pool not in team.pools:
        raise ConfigError(
            f"{shown}: pool: team {job.team!r} may not use pool {job.pool!r} "
            f"(its pools in {cfg.platform.teams_file}: {team.pools})"
        )
    pool = cfg.pool(job.pool)
    w = job.workers
    for key, need, have in (
        ("cpu", w.cpu, pool.cpu),
        ("memory_gib", w.memory_gib, pool.memory_gib),
        ("gpus", w.gpus, pool.gpus_per_node),
    ):
        if need > have:
            raise ConfigError(
                f"{shown}: workers.{key}: {need:g} per worker does not fit a node of pool "
                f"{pool.name!r} ({have:g})"
            )
    return job


def job_names(directory: Path | None = None) -> list[str]:
    """Every job folder's name."""
    return sorted(p.parent.name for p in (directory or jobs_dir()).glob(f"*/{JOB_FILE}"))


def job_file_schema() -> dict[str, Any]:
    """The JSON schema of `jobs/<name>/job.yaml`."""
    schema = JobSpec.model_json_schema()
    schema["properties"].pop("directory", None)
    schema["required"] = [k for k in schema.get("required", []) if k not in {"directory", "name"}]
    schema["title"] = "Gantry job.yaml"
    return schema


def runtime_config(job: JobSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The job's `config` with `--set key=value` overrides (values parsed as YAML scalars)."""
    config = dict(job.config)
    for key, value in overrides.items():
        if key not in config:
            raise ConfigError(
                f"--set {key}: not a config key of job {job.name!r} ({sorted(config)})"
            )
        if not _same_kind(config[key], value):
            raise ConfigError(
                f"--set {key}={value!r}: job {job.name!r} has {key}: {config[key]!r} "
                f"({type(config[key]).__name__})"
            )
        config[key] = value
    return json.loads(json.dumps(config))


def _same_kind(default: Any, value: Any) -> bool:
    """An override has its default's type; an int is a fine float (`--set lr=1`)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return default is None or isinstance(value, type(default))

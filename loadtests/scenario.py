"""The scenario file: what to load, how, what to roll out, and what must hold.

A scenario is YAML under `loadtests/scenarios/`. A wrong file raises `ScenarioError` with one
line naming the file and the key (`step.yaml:shape.step_users: required key is missing`).
No Locust or Ray import here: the parent process and the Locust process both read it.
"""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gantry.errors import ConfigError
from gantry.sandbox_state import FaultKind
from gantry.validation import format_error
from loadtests.shapes import MAX_DURATION_S, Shape

SCENARIO_DIR = Path(__file__).parent / "scenarios"
# `target: sandbox` resolves to the Serve URL in the running sandbox's state file.
SANDBOX = "sandbox"

Service = Literal["embedder", "classifier"]


class ScenarioError(ConfigError):
    """A scenario Gantry cannot run; the message is one line for the user."""


class _Model(BaseModel):
    # Unknown keys are typos: reject them instead of ignoring an expectation.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rollout(_Model):
    """Start a rollout `at_s` seconds after the load started (sandbox: `gantry rollout`)."""

    at_s: Annotated[float, Field(ge=0, le=MAX_DURATION_S)]
    to: str = Field(min_length=1)
    """Version to roll out, e.g. v2."""
    end_load_after_s: Annotated[float, Field(ge=0)] | None = 10.0
    """End the load this long after the rollout finished (s); null: run the whole shape."""
    user_config: dict[str, Any] = {}
    """Merged over the canary's user_config; TEST-ONLY faults for rollback scenarios, e.g.
    `{faults: {error_rate: 0.5}}` (services/common/knobs.py)."""


class Fault(_Model):
    """Inject a fault `at_s` seconds after the load started (sandbox: `gantry sandbox fault`)."""

    at_s: Annotated[float, Field(ge=0, le=MAX_DURATION_S)]
    kind: FaultKind
    """replica-kill (SIGKILL one replica), node-loss (a pool node's raylet and everything under
    it), prometheus-down (SIGKILL Prometheus): sandbox/faults.py."""
    target: str | None = None
    """replica-kill: the service (default: the scenario's); node-loss: the pool, e.g. gpu."""

    @model_validator(mode="after")
    def _target(self) -> Fault:
        if self.kind == "node-loss" and not self.target:
            raise ValueError("a node-loss fault needs `target: <pool>`, e.g. gpu")
        return self


class JobStep(_Model):
    """Queue a job of jobs/ `at_s` seconds after the load started (sandbox: `gantry job run`)."""

    at_s: Annotated[float, Field(ge=0, le=MAX_DURATION_S)]
    name: str = Field(min_length=1)
    """The job: a folder of jobs/, e.g. digits."""
    set: dict[str, Any] = {}
    """Overrides of the job's `config` (as `gantry job run --set KEY=VALUE`)."""


class JobExpectation(_Model):
    """How one of the scenario's jobs must have ended (gantry/sandbox_state.py JobRecord)."""

    state: Literal["succeeded", "failed", "stopped"] = "succeeded"
    min_preemptions: Annotated[int, Field(ge=0)] | None = None
    """It was preempted (and queued again) at least this many times."""
    resumed: bool | None = None
    """Its result (gantry.jobs.RESULT_FILE) says it resumed from a checkpoint."""


class Expectations(_Model):
    """What must hold; every key is optional. Times in s, latencies in ms, replicas counted
    across all versions of the service."""

    scale_out_within_s: Annotated[float, Field(gt=0)] | None = None
    """Replicas exceed their starting count within this long after users first rise."""
    max_replicas_reached: Annotated[int, Field(ge=1)] | None = None
    """The highest replica count seen is at least this."""
    scale_out_decided_within_s: Annotated[float, Field(gt=0)] | None = None
    """The autoscaler wants more replicas than at the start within this long after users
    first rise (the decision; `scale_out_within_s` is the new replica serving)."""
    p99_within_slo: bool | None = None
    """p99 latency (sliding window) must stay under the service's own SLO
    (`slo.p99_latency_ms` in services/<name>/service.yaml)..."""
    recover_within_s: Annotated[float, Field(gt=0)] | None = None
    """...within this long after users first rise, and stay under it while load lasts."""
    scale_in_within_s: Annotated[float, Field(gt=0)] | None = None
    """Replicas are back to their starting count within this long after the load ended."""
    recover_after: Literal["rise", "fault", "drop"] = "rise"
    """Where `recover_within_s` counts from: the load's rise, the fault, or the load's drop
    back from its peak (the end of a spike)."""
    failed_requests: Annotated[int, Field(ge=0)] | None = None
    """At most this many requests may fail (0: none)."""
    failed_ratio: Annotated[float, Field(ge=0, le=1)] | None = None
    """At most this share of requests may fail (0.005: 0.5 %)."""
    clean_failures: bool | None = None
    """Every failed request was answered by the platform, with a 5xx or Serve's 408 (its
    request timeout): none got no answer (closed, client timeout) or a wrong one."""
    max_latency_ms: Annotated[float, Field(gt=0)] | None = None
    """The slowest request, failed or not, took at most this long (no hang)."""
    replaced_within_s: Annotated[float, Field(gt=0)] | None = None
    """After the fault, replicas and pool nodes are back to their count before it this soon."""
    replica_deaths: Annotated[int, Field(ge=0)] | None = None
    """At most this many replicas died unintended (killed, crashed; not a scale-in)."""
    rollout: Literal["promoted", "rolled_back"] | None = None
    """How the rollout must end."""
    jobs: dict[str, JobExpectation] = {}
    """How the scenario's jobs (`jobs:` steps) must have ended, by job name."""

    @field_validator("recover_within_s")
    @classmethod
    def _needs_bound(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and not info.data.get("p99_within_slo"):
            raise ValueError("recover_within_s needs p99_within_slo")
        return v


class Abort(_Model):
    """When a run stops early with a verdict instead of hammering a broken target."""

    fail_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Stop when this share of requests failed over the last `window_s`."""
    window_s: Annotated[float, Field(gt=0)] = 10.0
    stall_s: Annotated[float, Field(gt=0)] = 30.0
    """Stop when users are running but no request completed for this long."""


class Scenario(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    service: Service
    target: str = SANDBOX
    """`sandbox` or a loopback URL; any other host needs `gantry loadtest --target`."""
    namespace: str | None = None
    """Kubernetes namespace of the service; default: its team in services/<name>/service.yaml."""
    shape: Shape
    payload: Literal["mixed", "queries"] = "mixed"
    """Request mix (loadtests/payloads.py): `mixed` (bulk and online: up to 64 passages per
    request, for capacity) or `queries` (1-4 short texts: online traffic, what the service's
    latency SLO is written for)."""
    rollout: Rollout | None = None
    fault: Fault | None = None
    jobs: list[JobStep] = []
    """Jobs queued during the run; the run observes until they end (within `tail_s`)."""
    expectations: Expectations = Expectations()
    abort: Abort = Abort()
    tail_s: Annotated[float, Field(ge=0, le=600)] = 0.0
    """Keep observing this long after the load ended (for scale-in), in s; ends early once
    replicas are back to their starting count and any rollout finished."""
    latency_window_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    """Width of the sliding window the timeline's p50/p95/p99 are computed over, in s."""

    @field_validator("target")
    @classmethod
    def _loopback_only(cls, v: str) -> str:
        if v != SANDBOX and not is_loopback(v):
            raise ValueError(
                f"{v!r} is not a loopback URL; pass a remote target on the command line "
                "with `gantry loadtest --target URL`"
            )
        return v

    @model_validator(mode="after")
    def _fault_expectations(self) -> Scenario:
        e = self.expectations
        if self.fault is None and (e.replaced_within_s or e.recover_after == "fault"):
            raise ValueError("expectations.replaced_within_s and recover_after: fault need a fault")
        if self.fault is not None and self.fault.at_s >= self.shape.duration_s:
            raise ValueError(f"fault.at_s {self.fault.at_s:g} must be before shape.duration_s")
        queued = [j.name for j in self.jobs]
        for name in e.jobs:
            if name not in queued:
                raise ValueError(f"expectations.jobs.{name}: no `jobs:` step queues {name!r}")
        for i, name in enumerate(queued):
            if name in queued[:i]:
                raise ValueError(f"jobs[{i}]: {name!r} is queued twice (one run at a time)")
        return self

    @property
    def planned_s(self) -> float:
        """Longest the run can take: load plus the observation tail."""
        return self.shape.duration_s + self.tail_s


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def parse_scenario(raw: object, source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(format_error(err, prefix=source)) from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario by file path or by name under `loadtests/scenarios/` (`step` -> step.yaml)."""
    path = Path(name_or_path)
    if not path.exists() and path.suffix == "":
        path = SCENARIO_DIR / f"{path.name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        raise ScenarioError(f"no scenario {str(name_or_path)!r}; known: {known}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(f"{path.name}: not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path.name}: a scenario must be a mapping")
    return parse_scenario(raw, source=path.name)


class RunSpec(_Model):
    """What the parent hands the Locust process (as JSON, in the run folder)."""

    scenario: Scenario
    host: str
    """Base URL of the service, including any route prefix."""
    out_dir: str
    ui: bool = False
    n_features: int = 4
    """Classifier input width (features per instance)."""
    request_timeout_s: float | None = None
    """The service's own request timeout (serve.yaml), in s: users wait a margin longer."""

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
)

from gantry.errors import ConfigError
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
    failed_requests: Annotated[int, Field(ge=0)] | None = None
    """At most this many requests may fail (0: none)."""
    rollout: Literal["promoted", "rolled_back"] | None = None
    """How the rollout must end."""

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

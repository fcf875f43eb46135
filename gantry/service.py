"""The one typed model of a model service: `services/<name>/service.yaml` + the stack's overrides.

Both engines read it: the cluster's ModelService component (Deployment, HPA, Flagger Canary) and
the embedded sandbox (Serve's replica autoscaler, Gantry's rollout driver). So the `autoscaling`
and `canary` blocks say *what* the policy is, in units, not how one engine spells it; the
`hpa_*`/`serve_*` helpers translate. Importing this module has no Pulumi side effects.

Use: `load_services(cfg)` -> {name: ServiceSpec} for a stack's enabled services, or
`load_service(name, entry, services_dir)`. For the sandbox: `spec.serve_autoscaling_config()`,
`spec.canary.interval_s/threshold/step_weight/max_weight/steps/success_rate_min/p99_max_ms`,
`spec.canary.webhooks.smoke/load` (a real request each), `spec.serve_config` (parsed serve.yaml).

Errors are `ServiceSpecError` (a `ConfigError`): one line naming the file (or the stack key,
when the bad value came from `gantry:services.<name>.overrides`) and the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gantry import project
from gantry.errors import ConfigError
from gantry.stack import GantryConfig, ServiceEntry
from gantry.validation import deep_merge, format_error

SERVICE_FILE = "service.yaml"

# Serve's default `graceful_shutdown_timeout_s` (seconds) when serve.yaml does not set one.
SERVE_DEFAULT_GRACEFUL_SHUTDOWN_S = 20.0

# Seconds Serve's shutdown needs besides draining requests (controller and proxy teardown after
# SIGINT); measured in tests/benchmarks/bench_pod_start.py.
DRAIN_OVERHEAD_S = 15

PosFloat = Annotated[float, Field(gt=0)]
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Percent = Annotated[float, Field(gt=0, le=100)]
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class ServiceSpecError(ConfigError):
    """A service definition Gantry cannot use; one line naming the file or stack key."""


def duration_s(value: str) -> int:
    """Seconds in a Flagger/Go duration such as `30s`, `1m`, `1m30s`, `2h`."""
    m = _DURATION.fullmatch(value)
    if not value or not m:
        raise ValueError(f"duration {value!r} is not like 30s, 1m or 1m30s")
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


def _duration(value: Any) -> str:
    value = f"{value}s" if isinstance(value, int) else str(value)
    if duration_s(value) <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return value


# A Go duration as Flagger spells it (30s, 1m, 1m30s); a bare integer means seconds.
Duration = Annotated[str, BeforeValidator(_duration)]


class _Model(BaseModel):
    # Unknown keys are typos; camelCase keys (Flagger's spelling) are accepted by alias.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Image(_Model):
    """How the service's container image is built. Paths are relative to services/<name>/."""

    repository: str  # image name without registry or tag, e.g. gantry/embedder
    dockerfile: str = "Dockerfile"  # the EKS stack may override (e.g. the CUDA Dockerfile)
    # Build args passed with --build-arg.
    build_args: dict[str, str] = {}


class Serve(_Model):
    """Ray Serve facts the pod needs; they must agree with serve.yaml and app.py."""

    config: str = "serve.yaml"  # Serve config file, relative to services/<name>/
    port: Annotated[int, Field(ge=1024, le=65535)] = 8000  # Serve HTTP proxy port
    # App readiness route (200 only once the model is loaded and a warm-up inference passed).
    readiness_path: str
    # Serve's own proxy health route (liveness: the proxy and controller are alive).
    health_path: str = "/-/healthz"
    metrics_port: Annotated[int, Field(ge=1024, le=65535)] = 8080  # Ray's Prometheus export port
    # Serve replicas per pod, fixed (the HPA scales pods). None: serve.yaml's `num_replicas`.
    replicas_per_pod: PosInt | None = None
    # Seconds for endpoints and Envoy to stop routing to a terminating pod (part of preStop).
    drain_delay_s: PosInt = 10

    @field_validator("readiness_path", "health_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path {v!r} must start with /")
        return v


class Resources(_Model):
    """Container resources per pod (the Ray head + proxy + `replicas_per_pod` replicas).

    Ray's fixed processes (GCS, raylet, dashboard agent, proxy) take about 1 GiB RSS per pod;
    `memory_gib` must include it.
    """

    cpu: PosFloat  # cores requested
    memory_gib: PosFloat  # GiB requested
    cpu_limit: PosFloat | None = None  # cores; None: no burst above the request
    memory_limit_gib: PosFloat | None = None  # GiB; None: equal to the request (no OOM surprise)
    gpus: NonNegInt = 0  # whole GPUs per pod (request = limit, as Kubernetes requires)

    @model_validator(mode="after")
    def _limits(self) -> Resources:
        if self.cpu_limit is not None and self.cpu_limit < self.cpu:
            raise ValueError(f"cpu_limit {self.cpu_limit} < cpu {self.cpu}")
        if self.memory_limit_gib is not None and self.memory_limit_gib < self.memory_gib:
            raise ValueError(
                f"memory_limit_gib {self.memory_limit_gib} < memory_gib {self.memory_gib}"
            )
        return self

    @property
    def cpu_max(self) -> float:
        return self.cpu_limit or self.cpu

    @property
    def memory_max_gib(self) -> float:
        return self.memory_limit_gib or self.memory_gib


class Sidecar(_Model):
    """The Istio sidecar's resources (set by pod annotations; counted by the quota check)."""

    cpu: PosFloat = 0.1  # cores requested
    memory_mib: PosInt = 128  # MiB requested
    cpu_limit: PosFloat = 0.5  # cores
    memory_limit_mib: PosInt = 256  # MiB


class ScaleBehaviour(_Model):
    """One direction of scaling. Engine-neutral: HPA `behavior` and Serve's delays."""

    stabilization_s: NonNegInt  # seconds a recommendation must hold before acting
    period_s: PosInt = 15  # seconds per step (HPA policy periodSeconds)
    max_percent: PosInt | None = None  # at most this % of current replicas per period
    max_replicas_step: PosInt | None = None  # at most this many replicas per period

    @model_validator(mode="after")
    def _one_policy(self) -> ScaleBehaviour:
        if self.max_percent is None and self.max_replicas_step is None:
            raise ValueError("set max_percent and/or max_replicas_step")
        return self


class Autoscaling(_Model):
    """Replica autoscaling: pods on Kubernetes (HPA), Serve replicas in the sandbox."""

    min_replicas: PosInt  # replicas
    max_replicas: PosInt  # replicas
    # Target in-flight (ongoing) requests per Serve replica; HPA target per pod = this x
    # serve.replicas_per_pod; Serve's `target_ongoing_requests` in the sandbox.
    target_in_flight: PosFloat
    # Secondary HPA target: % of requested CPU (None: in-flight only). No Serve equivalent.
    target_cpu_percent: Annotated[int, Field(ge=1, le=100)] | None = 80
    scale_up: ScaleBehaviour  # fast: a short window, big steps
    scale_down: ScaleBehaviour  # stabilised: a long window, small steps

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        return self


class Slo(_Model):
    """What users are promised; canary thresholds and alerts default to these."""

    success_rate_percent: Percent  # % of requests answered without a 5xx
    p99_latency_ms: PosFloat  # ms, 99th percentile of request duration


class Probe(_Model):
    period_s: PosInt  # seconds between probes
    timeout_s: PosInt = 2  # seconds per probe
    failure_threshold: PosInt  # consecutive failures before acting
    initial_delay_s: NonNegInt = 0  # seconds


class Probes(_Model):
    """startup/readiness probe the app readiness route; liveness probes Serve's proxy health."""

    startup: Probe  # budget period_s x failure_threshold covers Ray start + model load + warm-up
    readiness: Probe
    liveness: Probe


MetricName = Literal[
    # Flagger built-ins over Istio's telemetry (the sandbox computes them from Serve's metrics):
    "request-success-rate",  # % of non-5xx responses; threshold `min`
    "request-duration",  # p99 latency in ms; threshold `max`
    # Gantry MetricTemplates over Ray Serve's own metrics (infra/serving/metrics.py):
    "serve-error-rate",  # % of requests the Serve replicas failed; threshold `max`
    "serve-latency-p99",  # p99 of Serve's processing latency in ms; threshold `max`
]


class ThresholdRange(_Model):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("thresholdRange needs min and/or max")
        return self


class MetricCheck(_Model):
    """One analysis check, as in Flagger's `analysis.metrics`; no data counts as a failure."""

    name: MetricName
    # None only for the two SLO-backed checks, filled from `slo` by ServiceSpec.
    threshold_range: ThresholdRange | None = Field(default=None, alias="thresholdRange")
    interval: Duration = "1m"  # window the metric is computed over


class Request(_Model):
    """A real request to the service (smoke test and load generation)."""

    method: Literal["GET", "POST"] = "POST"
    path: str
    body: dict[str, Any] | None = None  # JSON body


class SmokeHook(_Model):
    """pre-rollout: one request to the canary must answer 2xx or the rollout does not start."""

    request: Request
    timeout: Duration = "30s"


class LoadHook(_Model):
    """rollout: traffic generated against the canary during every analysis interval."""

    request: Request
    rps: PosFloat  # requests per second in total
    concurrency: PosInt = 2  # concurrent clients
    timeout: Duration = "15s"  # per webhook call


class Webhooks(_Model):
    smoke: SmokeHook | None = None
    load: LoadHook | None = None


class Canary(_Model):
    """The canary policy, spelled like Flagger's `analysis` block (camelCase keys accepted)."""

    interval: Duration  # time between checks (and weight steps)
    threshold: PosInt  # failed checks before rollback
    step_weight: Annotated[int, Field(ge=1, le=100, alias="stepWeight")]  # % added per pass
    max_weight: Annotated[int, Field(ge=1, le=100, alias="maxWeight")]  # % reached, then promote
    metrics: list[MetricCheck] = Field(min_length=1)
    webhooks: Webhooks = Webhooks()

    @model_validator(mode="after")
    def _weights(self) -> Canary:
        if self.step_weight > self.max_weight:
            raise ValueError(f"stepWeight {self.step_weight} > maxWeight {self.max_weight}")
        if self.max_weight % self.step_weight:
            raise ValueError(
                f"stepWeight {self.step_weight} does not divide maxWeight {self.max_weight}"
            )
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate metric checks in {names}")
        return self

    @property
    def interval_s(self) -> int:
        return duration_s(self.interval)

    def metric(self, name: str) -> MetricCheck | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def success_rate_min(self) -> float | None:
        """% the canary's success rate must stay at or above (request-success-rate min)."""
        m = self.metric("request-success-rate")
        return m.threshold_range.min if m and m.threshold_range else None

    @property
    def p99_max_ms(self) -> float | None:
        """ms the canary's p99 latency must stay at or below (request-duration max)."""
        m = self.metric("request-duration")
        return m.threshold_range.max if m and m.threshold_range else None

    @property
    def steps(self) -> list[int]:
        """Canary weights in order, e.g. [10, 20, 30, 40, 50]."""
        return list(range(self.step_weight, self.max_weight + 1, self.step_weight))


class ServiceSpec(_Model):
    """One model service, after the stack's overrides are merged in."""

    name: str  # the folder name; also the Kubernetes name of every object
    description: str = ""
    team: str  # team (platform/teams.yaml) whose namespace the service runs in
    version: str = "v1"  # model version the pods serve (canary: change it and `up`)
    image: Image
    pool: str  # node pool name (stack `pools`)
    serve: Serve
    resources: Resources
    sidecar: Sidecar = Sidecar()
    autoscaling: Autoscaling
    slo: Slo
    probes: Probes
    canary: Canary
    # Resolved at load time, not written in the file:
    directory: Path  # services/<name>/
    serve_config: dict[str, Any]  # the parsed serve.yaml

    @model_validator(mode="before")
    @classmethod
    def _slo_thresholds(cls, data: Any) -> Any:
        """Canary success-rate/duration checks default to the SLO: one number, one place."""
        if not isinstance(data, dict):
            return data
        slo, canary = data.get("slo"), data.get("canary")
        if not isinstance(slo, dict) or not isinstance(canary, dict):
            return data
        defaults = {
            "request-success-rate": {"min": slo.get("success_rate_percent")},
            "request-duration": {"max": slo.get("p99_latency_ms")},
        }
        metrics = []
        for m in canary.get("metrics") or []:
            unset = (
                isinstance(m, dict) and m.get("thresholdRange", m.get("threshold_range")) is None
            )
            if unset and m.get("name") in defaults:
                m = {**m, "thresholdRange": defaults[m["name"]]}
            metrics.append(m)
        return {**data, "canary": {**canary, "metrics": metrics}}

    @model_validator(mode="after")
    def _thresholds_set(self) -> ServiceSpec:
        for i, m in enumerate(self.canary.metrics):
            if m.threshold_range is None:
                raise ValueError(f"canary.metrics[{i}] ({m.name}) needs a thresholdRange")
        return self

    @property
    def serve_config_path(self) -> Path:
        return self.directory / self.serve.config

    @property
    def graceful_shutdown_s(self) -> float:
        """Longest `graceful_shutdown_timeout_s` of the service's Serve deployments (s)."""
        found = [
            float(d["graceful_shutdown_timeout_s"])
            for app in self.serve_config.get("applications") or []
            for d in app.get("deployments") or []
            if d.get("graceful_shutdown_timeout_s") is not None
        ]
        return max(found, default=SERVE_DEFAULT_GRACEFUL_SHUTDOWN_S)

    @property
    def request_timeout_s(self) -> float:
        """Longest a request may run (s): serve.yaml's http_options.request_timeout_s, else the
        graceful shutdown timeout."""
        timeout = (self.serve_config.get("http_options") or {}).get("request_timeout_s")
        return float(timeout) if timeout is not None else self.graceful_shutdown_s

    @property
    def pre_stop_s(self) -> int:
        """preStop sleep (s): endpoints and Envoy stop routing here (drain_delay_s), then every
        request already in flight finishes (request_timeout_s) before the stop signal. Measured:
        `serve run` shutting down on its signal closes the proxy's open connections, so requests
        still in flight then are dropped (tests/benchmarks/bench_pod_start.py)."""
        return int(self.serve.drain_delay_s + math.ceil(self.request_timeout_s))

    @property
    def termination_grace_s(self) -> int:
        """Pod grace period (s): preStop + Serve's graceful shutdown + its teardown overhead."""
        return int(self.pre_stop_s + self.graceful_shutdown_s + DRAIN_OVERHEAD_S)

    @property
    def replicas_per_pod(self) -> int:
        """Serve replicas in each pod: `serve.replicas_per_pod`, else serve.yaml's num_replicas."""
        if self.serve.replicas_per_pod is not None:
            return self.serve.replicas_per_pod
        counts = [
            d.get("num_replicas", 1)
            for app in self.serve_config.get("applications") or []
            for d in app.get("deployments") or []
        ]
        return max((c for c in counts if isinstance(c, int)), default=1)

    @property
    def hpa_target_in_flight_per_pod(self) -> float:
        return self.autoscaling.target_in_flight * self.replicas_per_pod

    def serve_autoscaling_config(self) -> dict[str, Any]:
        """The `autoscaling` block as Ray Serve's `autoscaling_config` (for the sandbox)."""
        a = self.autoscaling
        return {
            "min_replicas": a.min_replicas,
            "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_in_flight,
            "upscale_delay_s": a.scale_up.stabilization_s,
            "downscale_delay_s": a.scale_down.stabilization_s,
        }


# ---------------------------------------------------------------- loading


def _has_key(doc: Any, loc: tuple[Any, ...]) -> bool:
    for part in loc:
        in_map = isinstance(doc, Mapping) and part in doc
        in_list = isinstance(doc, list) and isinstance(part, int) and part < len(doc)
        if in_map or in_list:
            doc = doc[part]
        else:
            return False
    return True


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ServiceSpecError(f"{path}: {what} does not exist") from None
    except yaml.YAMLError as err:
        raise ServiceSpecError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(doc, dict):
        raise ServiceSpecError(f"{path}: must be a mapping")
    return doc


def load_service(
    name: str,
    entry: ServiceEntry | None = None,
    services_dir: Path | None = None,
    pools: list[str] | None = None,
) -> ServiceSpec:
    """`services/<name>/service.yaml` with the stack entry's `pool` and `overrides` merged in
    (`services_dir` default: the project's `services/`)."""
    entry = entry or ServiceEntry()
    directory = (services_dir or project.services_dir()) / name
    path = directory / SERVICE_FILE
    shown = project.shown(path)
    raw = _read_yaml(path, f"service {name!r} has no {SERVICE_FILE}")
    if "name" in raw and raw["name"] != name:
        raise ServiceSpecError(f"{shown}: name: {raw['name']!r} differs from the folder {name!r}")
    overrides = dict(entry.overrides)
    if entry.pool is not None:
        overrides["pool"] = entry.pool
    merged = deep_merge(raw, overrides)
    serve_file = directory / str((merged.get("serve") or {}).get("config", "serve.yaml"))
    merged.update(name=name, directory=directory)
    merged["serve_config"] = _read_yaml(serve_file, "the Serve config named by serve.config")
    try:
        spec = ServiceSpec.model_validate(merged)
    except ValidationError as err:
        loc = err.errors()[0]["loc"]
        # Blame the stack entry when the bad value came from it, else the file.
        where = f"gantry:services.{name}.overrides." if _has_key(overrides, loc) else f"{shown}: "
        raise ServiceSpecError(format_error(err, "\0").replace("\0:", where, 1)) from None
    if pools is not None and spec.pool not in pools:
        where = f"gantry:services.{name}.pool" if entry.pool else f"{shown}: pool"
        raise ServiceSpecError(f"{where}: pool {spec.pool!r} does not exist; pools: {pools}")
    return spec


def load_services(cfg: GantryConfig, services_dir: Path | None = None) -> dict[str, ServiceSpec]:
    """Every enabled service of a stack, by name, in stack order; each one's pool must exist and
    its team (platform/teams.yaml) must exist and be allowed on that pool."""
    pools = [p.name for p in cfg.pools]
    teams = {t.name: t for t in cfg.platform.teams.teams}
    specs = {}
    for name, entry in cfg.services.items():
        if not entry.enabled:
            continue
        spec = load_service(name, entry, services_dir, pools)
        shown = project.shown(spec.directory / SERVICE_FILE)
        team = teams.get(spec.team)
        if team is None:
            raise ServiceSpecError(
                f"{shown}: team: {spec.team!r} is not a team of "
                f"{cfg.platform.teams_file} ({sorted(teams)})"
            )
        if spec.pool not in team.pools:
            where = f"gantry:services.{name}.pool" if entry.pool else f"{shown}: pool"
            raise ServiceSpecError(
                f"{where}: team {spec.team!r} may not use pool {spec.pool!r} "
                f"(its pools in {cfg.platform.teams_file}: {team.pools})"
            )
        specs[name] = spec
    return specs


# Keys `load_service` resolves itself: not written in service.yaml.
_RESOLVED = ("directory", "serve_config")


def service_file_schema() -> dict[str, Any]:
    """The JSON schema of `services/<name>/service.yaml` (`gantry schema service`)."""
    schema = ServiceSpec.model_json_schema(by_alias=True)
    for key in _RESOLVED:
        schema["properties"].pop(key, None)
    # `name` may be omitted: it is the folder's name.
    schema["required"] = [k for k in schema.get("required", []) if k not in {*_RESOLVED, "name"}]
    schema["title"] = "Gantry service.yaml"
    return schema

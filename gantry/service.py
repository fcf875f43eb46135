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
from gantry.validation import KeyedError, deep_merge, format_error

SERVICE_FILE = "service.yaml"

# Serve's default `graceful_shutdown_timeout_s` (seconds) when serve.yaml does not set one.
SERVE_DEFAULT_GRACEFUL_SHUTDOWN_S = 20.0

# Seconds Serve's shutdown needs besides draining requests (controller and proxy teardown after
# SIGINT); measured in tests/benchmarks/bench_pod_start.py.
DRAIN_OVERHEAD_S = 15
DIRECT_INGRESS_DRAIN_S = 5
# What an ingress in front of the replicas (the pod's Ray HAProxy, the sandbox's gateway) retries
# on another replica (HAProxy `retry-on`): the connection failed, or the replica closed it without
# an answer (it died mid-request). Safe because inference is idempotent; never a 503 (that is
# Serve's backpressure: a retry would add load where there is too much).
INGRESS_RETRY_ON = "conn-failure empty-response"

# Seconds a mesh retry's try outlasts Serve's request timeout by default: a live pod answers
# first (408 at worst), so Envoy abandons and retries only a try no pod answers. The same margin
# as the sandbox gateway's `timeout server` (sandbox/gateway.py SERVER_TIMEOUT_MARGIN_S).
RETRY_TIMEOUT_MARGIN_S = 5
# Envoy's default retry back-off: each wait <= 10 x the 25 ms base interval (Envoy RetryPolicy
# `retry_back_off`; Istio's HTTPRetry does not change it). Counted into the route timeout.
ENVOY_MAX_BACKOFF_S = 0.25

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
Duration = Annotated[str, BeforeValidator(_duration, json_schema_input_type=str | int)]


class _Model(BaseModel):
    # Unknown keys are typos; camelCase keys (Flagger's spelling) are accepted by alias.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Image(_Model):
    """How the service's container image is built. Paths are relative to services/<name>/."""

    repository: str = Field(
        description="Image name without registry or tag, e.g. gantry/embedder; on EKS it is "
        "pushed to <image_registry>/<repository>."
    )
    dockerfile: str = Field(
        "Dockerfile",
        description="Dockerfile to build, relative to services/<name>/; a stack may override it "
        "(e.g. the EKS stack's CUDA Dockerfile).",
    )
    build_args: dict[str, str] = Field({}, description="Build args, passed with --build-arg.")


class Serve(_Model):
    """Ray Serve facts the pod needs; they must agree with serve.yaml and app.py."""

    config: str = Field(
        "serve.yaml",
        description="The Serve config file the pod runs, relative to services/<name>/.",
    )
    port: Annotated[int, Field(ge=1024, le=65535)] = Field(
        8000, description="Serve's HTTP port (container port `http`): HAProxy or Serve's proxy."
    )
    readiness_path: str = Field(
        description="App readiness route (startup and readiness probes): 200 only once the model "
        "is loaded and a warm-up inference passed."
    )
    health_path: str = Field(
        "/-/healthz",
        description="Serve's ingress health route (liveness probe): 200 while the ingress "
        "(HAProxy or Serve's proxy) is alive and has a replica to route to.",
    )
    metrics_port: Annotated[int, Field(ge=1024, le=65535)] = Field(
        8080, description="Ray's Prometheus metrics export port (container port `metrics`)."
    )
    replicas_per_pod: PosInt | None = Field(
        None,
        description="Serve replicas per pod, fixed (the HPA scales pods). Unset: serve.yaml's "
        "`num_replicas`.",
    )
    drain_delay_s: PosInt = Field(
        10,
        description="Seconds for endpoints and Envoy to stop routing to a terminating pod; the "
        "preStop sleep is this plus the request timeout.",
    )
    ingress: Literal["haproxy", "proxy"] = Field(
        "haproxy",
        description="What answers the pod's HTTP port. `haproxy`: Ray 2.60's HAProxy ingress, "
        "straight to the replicas' own HTTP servers (direct ingress); twice the requests per "
        "core of `proxy`, Serve's Python HTTP proxy, which hands each request to a replica as "
        "an actor call (docs/performance.md).",
    )

    def ray_env(self) -> dict[str, str]:
        """Environment of the pod's Ray processes (set before `ray start`) for this ingress."""
        # glibc's malloc makes up to 8 arenas per core for threaded processes, and every Ray
        # process runs many threads: 2 arenas hold the pod ~30 MiB PSS lower (docs/performance.md).
        common = {"MALLOC_ARENA_MAX": "2"}
        if self.ingress == "proxy":
            return common
        # HAProxy reaches the replicas' own ports (30000+) on the pod's IP: that traffic stays
        # on the pod's loopback route, which Istio's iptables never redirect to Envoy.
        return {
            **common,
            "RAY_SERVE_ENABLE_HA_PROXY": "1",
            # Seconds a stopping replica keeps serving so load balancers can drop it (Ray: 30,
            # and it raises graceful_shutdown_timeout_s to 35 to fit). In a pod the only one is
            # HAProxy beside it (reloaded in < 1 s), and preStop has already drained the rest.
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(DIRECT_INGRESS_DRAIN_S),
            # Ray's default is `conn-failure`: a replica killed mid-request (OOM) leaves every
            # request it held with a closed connection; this replays those whose body HAProxy
            # still holds (8 -> 1-3 of 8 in flight, measured in the pod), the mesh's `reset`
            # retry (service.retries) the closed rest (an occasional 500 is not retried).
            "RAY_SERVE_HAPROXY_RETRY_ON": INGRESS_RETRY_ON,
        }

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

    cpu: PosFloat = Field(description="CPU requested per pod, in cores.")
    memory_gib: PosFloat = Field(
        description="Memory requested per pod, in GiB (Ray's fixed processes included)."
    )
    cpu_limit: PosFloat | None = Field(
        None, description="CPU limit per pod, in cores. Unset: no burst above the request."
    )
    memory_limit_gib: PosFloat | None = Field(
        None,
        description="Memory limit per pod, in GiB. Unset: equal to the request (no OOM surprise).",
    )
    gpus: NonNegInt = Field(
        0,
        description="Whole GPUs (nvidia.com/gpu) per pod; request = limit, as Kubernetes requires.",
    )

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

    cpu: PosFloat = Field(0.1, description="CPU requested by the sidecar, in cores.")
    memory_mib: PosInt = Field(128, description="Memory requested by the sidecar, in MiB.")
    cpu_limit: PosFloat = Field(0.5, description="The sidecar's CPU limit, in cores.")
    memory_limit_mib: PosInt = Field(256, description="The sidecar's memory limit, in MiB.")


class ScaleBehaviour(_Model):
    """One direction of scaling. Engine-neutral: HPA `behavior` and Serve's delays."""

    stabilization_s: NonNegInt = Field(
        description="Seconds a recommendation must hold before acting (HPA stabilization window; "
        "Serve's upscale/downscale delay)."
    )
    period_s: PosInt = Field(
        15, description="Seconds per step (HPA policy periodSeconds; Kubernetes only)."
    )
    max_percent: PosInt | None = Field(
        None,
        description="At most this % of the current replicas added or removed per period (set "
        "this and/or max_replicas_step).",
    )
    max_replicas_step: PosInt | None = Field(
        None,
        description="At most this many replicas added or removed per period (set this and/or "
        "max_percent).",
    )

    @model_validator(mode="after")
    def _one_policy(self) -> ScaleBehaviour:
        if self.max_percent is None and self.max_replicas_step is None:
            raise ValueError("set max_percent and/or max_replicas_step")
        return self


# Seconds of in-flight samples Serve's autoscaler averages in the sandbox (Serve's default: 30).
# The HPA acts on the metric as the adapter serves it now; a 30 s mean would make the sandbox
# decide a step's scale-out ~15 s late.
SANDBOX_METRIC_WINDOW_S = 10.0


class Autoscaling(_Model):
    """Replica autoscaling: pods on Kubernetes (HPA), Serve replicas in the sandbox."""

    min_replicas: PosInt = Field(
        description="Fewest replicas (pods on Kubernetes, Serve replicas in the sandbox)."
    )
    max_replicas: PosInt = Field(
        description="Most replicas (pods on Kubernetes, Serve replicas in the sandbox)."
    )
    target_in_flight: PosFloat = Field(
        description="Target in-flight (ongoing) requests per Serve replica: Serve's "
        "`target_ongoing_requests` in the sandbox; the HPA's target per pod is this x "
        "serve.replicas_per_pod."
    )
    target_cpu_percent: Annotated[int, Field(ge=1, le=100)] | None = Field(
        80,
        description="Secondary HPA target, in % of requested CPU (Kubernetes only: Serve has no "
        "equivalent). null: scale on in-flight requests only.",
    )
    scale_up: ScaleBehaviour = Field(description="Scaling up: fast, a short window and big steps.")
    scale_down: ScaleBehaviour = Field(
        description="Scaling down: stabilised, a long window and small steps."
    )

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        return self


class Slo(_Model):
    """What users are promised; canary thresholds and alerts default to these."""

    success_rate_percent: Percent = Field(
        description="% of requests answered without a 5xx; the default `min` of the "
        "request-success-rate canary check."
    )
    p99_latency_ms: PosFloat = Field(
        description="99th percentile of request duration, in ms; the default `max` of the "
        "request-duration canary check."
    )


class Probe(_Model):
    """One Kubernetes probe's timing."""

    period_s: PosInt = Field(description="Seconds between probes.")
    timeout_s: PosInt = Field(2, description="Seconds each probe may take.")
    failure_threshold: PosInt = Field(description="Consecutive failures before acting.")
    initial_delay_s: NonNegInt = Field(0, description="Seconds before the first probe.")


class Probes(_Model):
    """startup/readiness probe the app readiness route; liveness probes Serve's proxy health."""

    startup: Probe = Field(
        description="Until it passes no other probe runs; its budget, period_s x "
        "failure_threshold, must cover Ray's start, the model load and the warm-up."
    )
    readiness: Probe = Field(description="Failing takes the pod out of the Service's endpoints.")
    liveness: Probe = Field(description="Failing restarts the container.")


# The metric checks a canary may run: each one's unit, threshold side and query per engine are
# its rows of METRIC_CHECKS in gantry/canary.py (a test keeps the two in step).
MetricName = Literal[
    "request-success-rate", "request-duration", "serve-error-rate", "serve-latency-p99"
]


class ThresholdRange(_Model):
    """Bounds a metric must stay within, as Flagger's `thresholdRange`: min and/or max."""

    min: float | None = Field(None, description="Lowest passing value, in the metric's unit.")
    max: float | None = Field(None, description="Highest passing value, in the metric's unit.")

    @model_validator(mode="after")
    def _one(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("thresholdRange needs min and/or max")
        return self


class MetricCheck(_Model):
    """One analysis check, as in Flagger's `analysis.metrics`; no data counts as a failure."""

    name: MetricName = Field(
        description="The metric, by Flagger's name. Rates are in %, latencies in ms; a success "
        "rate needs a `min`, an error rate or a latency a `max`."
    )
    threshold_range: ThresholdRange | None = Field(
        default=None,
        alias="thresholdRange",
        description="Bounds the metric must stay within. May be omitted only for "
        "request-success-rate and request-duration: they default to slo.success_rate_percent "
        "(min) and slo.p99_latency_ms (max).",
    )
    interval: Duration = Field(
        "1m",
        description="Window the metric is computed over (30s, 1m, 1m30s; an integer means "
        "seconds).",
    )


class Request(_Model):
    """A real request to the service (smoke test and load generation)."""

    method: Literal["GET", "POST"] = Field("POST", description="HTTP method.")
    path: str = Field(description="Path on the service, e.g. /v1/models/classifier:predict.")
    body: dict[str, Any] | None = Field(None, description="JSON body. Unset: no body.")


class SmokeHook(_Model):
    """pre-rollout: one request to the canary must answer 2xx or the rollout does not start."""

    request: Request = Field(description="Sent once to the canary before the rollout starts.")
    timeout: Duration = Field(
        "30s", description="How long the request may take (30s, 1m; an integer means seconds)."
    )


class LoadHook(_Model):
    """rollout: traffic generated against the canary during every analysis interval."""

    request: Request = Field(description="Sent to the canary over and over.")
    rps: PosFloat = Field(description="Requests per second, in total over all clients.")
    concurrency: PosInt = Field(2, description="Concurrent clients.")
    timeout: Duration = Field(
        "15s", description="Per webhook call (30s, 1m; an integer means seconds)."
    )


class Webhooks(_Model):
    """Requests sent to the canary (Flagger webhooks; the sandbox's driver sends the same)."""

    smoke: SmokeHook | None = Field(
        None, description="A smoke test before the rollout starts. Unset: none."
    )
    load: LoadHook | None = Field(
        None,
        description="Load during the analysis, so the checks have data. Unset: only real "
        "traffic reaches the canary.",
    )


class Canary(_Model):
    """The canary policy, spelled like Flagger's `analysis` block (camelCase keys accepted)."""

    interval: Duration = Field(
        description="Time between checks and weight steps (30s, 1m, 1m30s; an integer means "
        "seconds)."
    )
    threshold: PosInt = Field(description="Failed checks before rollback.")
    step_weight: Annotated[int, Field(ge=1, le=100, alias="stepWeight")] = Field(
        description="% of traffic added to the canary per passing check; must divide maxWeight."
    )
    max_weight: Annotated[int, Field(ge=1, le=100, alias="maxWeight")] = Field(
        description="% of traffic at which the canary is promoted."
    )
    metrics: list[MetricCheck] = Field(
        min_length=1,
        description="Checks run every interval; a check without data counts as failed.",
    )
    webhooks: Webhooks = Field(Webhooks(), description="Requests sent to the canary.")

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


# What Envoy may retry on (Istio's `retryOn`): the x-envoy-retry-on conditions, the gRPC ones
# (x-envoy-retry-grpc-on: matched on a response's grpc-status only), or an HTTP status code,
# which Istio moves to the route's retriable status codes (istio/istio pilot/pkg/networking/
# core/route/retry/retry.go, parseRetryOn). `retriable-headers` is left out: Istio's HTTPRetry
# has no field for the headers it needs.
RETRY_CONDITIONS = (
    "connect-failure",
    "refused-stream",
    "reset",
    "reset-before-request",
    "gateway-error",
    "5xx",
    "retriable-4xx",
    "retriable-status-codes",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
)
# Only failures where the request never reached a model or its pod stopped answering; never a
# status code, so Serve's overload 503 (max_queued_requests) is not multiplied (docs/rollouts.md).
DEFAULT_RETRY_ON = ["connect-failure", "refused-stream", "reset"]


def _retry_condition(value: Any) -> str:
    text = str(value).strip()
    if text.isdigit():
        if not 400 <= int(text) <= 599:
            raise ValueError(f"status code {text} is not a 4xx or 5xx")
        return text
    if text not in RETRY_CONDITIONS:
        raise ValueError(
            f"{text!r} is neither an HTTP status code nor one of Envoy's retry conditions "
            f"({', '.join(RETRY_CONDITIONS)})"
        )
    return text


# One retryOn entry: an Envoy retry condition, or an HTTP status code (an integer).
RetryCondition = Annotated[str, BeforeValidator(_retry_condition, json_schema_input_type=str | int)]


class Retries(_Model):
    """The mesh's retries of a request (Kubernetes only): the Flagger Canary's `service.retries`,
    which Flagger copies into the VirtualService's route (Istio HTTPRetry). Inference requests
    are idempotent, so a retry may replay one a dead pod had started."""

    attempts: Annotated[int, Field(ge=0, le=5)] = Field(
        2,
        description="Retries after the first try (Istio `attempts`), each to a pod not tried yet "
        "(Istio's previous-hosts predicate). 0: no retries at all.",
    )
    per_try_timeout_s: PosFloat | None = Field(
        None,
        description="Seconds one try may take before Envoy abandons it (Istio `perTryTimeout`) "
        "and, with `reset` in retry_on, retries another pod. Must exceed serve.yaml's "
        "http_options.request_timeout_s: a live pod answers first (Serve's 408 at worst), so "
        "only a pod that went silent is retried. Unset: request_timeout_s + 5.",
    )
    retry_on: list[RetryCondition] = Field(
        DEFAULT_RETRY_ON,
        min_length=1,
        description="What is retried (Istio `retryOn`): Envoy retry conditions and/or HTTP "
        "status codes. Default: connection failures, refused HTTP/2 streams and resets or "
        "silent tries (the pod died), never a status code.",
    )

    @model_validator(mode="after")
    def _conditions(self) -> Retries:
        if len(set(self.retry_on)) != len(self.retry_on):
            raise KeyedError("retry_on", f"duplicate entries in {self.retry_on}", relative=True)
        if "retriable-status-codes" in self.retry_on and not any(
            c.isdigit() for c in self.retry_on
        ):
            raise KeyedError(
                "retry_on",
                "retriable-status-codes needs a status code beside it (e.g. 503)",
                relative=True,
            )
        return self


class ServiceSpec(_Model):
    """One model service, after the stack's overrides are merged in."""

    name: str = Field(
        description="The service's folder name (may be omitted); also the Kubernetes name of "
        "every object."
    )
    description: str = Field("", description="What the service is, in one line.")
    team: str = Field(
        description="Team (platform/teams.yaml) whose namespace the service runs in; it must be "
        "allowed on the pool."
    )
    version: str = Field(
        "v1",
        description="Model version the pods serve; changing it (then `gantry up`) is a canary.",
    )
    image: Image = Field(description="How the container image is built.")
    pool: str = Field(description="Node pool (the stack's `pools`) the pods run on.")
    serve: Serve = Field(description="Ray Serve facts the pod needs.")
    resources: Resources = Field(description="Container resources per pod.")
    sidecar: Sidecar = Field(Sidecar(), description="The Istio sidecar's resources per pod.")
    autoscaling: Autoscaling = Field(description="Replica autoscaling.")
    slo: Slo = Field(description="What users are promised; canary thresholds default to it.")
    probes: Probes = Field(description="Kubernetes probes.")
    canary: Canary = Field(description="The canary policy a new version is rolled out by.")
    retries: Retries = Field(
        Retries(), description="The mesh's retries of a request (Kubernetes only)."
    )
    # Resolved at load time, not written in the file (service_file_schema leaves them out):
    directory: Path = Field(description="services/<name>/.")
    serve_config: dict[str, Any] = Field(description="The parsed serve.yaml.")

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

    @model_validator(mode="after")
    def _retry_outlasts_serve(self) -> ServiceSpec:
        per_try = self.retries.per_try_timeout_s
        if per_try is not None and per_try <= self.request_timeout_s:
            raise KeyedError(
                "retries.per_try_timeout_s",
                f"{per_try:g} s must exceed Serve's request timeout ({self.request_timeout_s:g} s, "
                f"{self.serve.config} http_options.request_timeout_s), or Envoy retries requests "
                "a live pod is still working on",
            )
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
    def per_try_timeout_s(self) -> float:
        """Seconds one try of the mesh's retry policy may take: `retries.per_try_timeout_s`, else
        the request timeout + RETRY_TIMEOUT_MARGIN_S."""
        per_try = self.retries.per_try_timeout_s
        return per_try if per_try is not None else self.request_timeout_s + RETRY_TIMEOUT_MARGIN_S

    @property
    def route_timeout_s(self) -> float:
        """The route's whole timeout (s): every try at its per-try timeout plus Envoy's back-off
        before each retry, so the route never cuts a retry short."""
        attempts = self.retries.attempts
        return (attempts + 1) * self.per_try_timeout_s + math.ceil(attempts * ENVOY_MAX_BACKOFF_S)

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
            "look_back_period_s": SANDBOX_METRIC_WINDOW_S,
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


def _error_loc(err: ValidationError) -> tuple[Any, ...]:
    """Where the first error is: its location, plus a KeyedError's own key under it."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    keyed = (first.get("ctx") or {}).get("error")
    if isinstance(keyed, KeyedError):
        key = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", keyed.key))
        loc = (*loc, *key) if keyed.relative else key
    return loc


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
        loc = _error_loc(err)
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

"""The canary checks of a service's `canary.metrics`, as PromQL against the sandbox's Prometheus.

Same metric names as the cluster's checks (services/common/metrics.py, Ray Serve's own series);
only the selector differs: on the cluster a canary is a set of pods, in the sandbox it is the
Serve application `<service>-<version>` and the `version` label. Every query covers the check's
`interval` window; no data (no requests in the window) fails the check, as in Flagger.
"""

from __future__ import annotations

from dataclasses import dataclass

from gantry.sandbox_state import app_name
from gantry.service import MetricCheck, ServiceSpec, duration_s
from sandbox.prometheus import PromQL


def queries(service: str, version: str, window_s: int) -> dict[str, str]:
    """PromQL per metric check name for one version of a service."""
    w = f"{window_s}s"
    gantry = f'service="{service}", version="{version}"'
    app = f'application="{app_name(service, version)}"'
    requests = f"sum(rate(ray_gantry_requests_total{{{gantry}}}[{w}]))"
    ok = f'sum(rate(ray_gantry_requests_total{{{gantry}, outcome!="server_error"}}[{w}]))'
    # Serve's error counter has no series until the first error: absent errors count as 0.
    serve_errors = (
        f"(sum(rate(ray_serve_deployment_error_counter_total{{{app}}}[{w}])) or vector(0))"
    )
    serve_requests = f"sum(rate(ray_serve_deployment_request_counter_total{{{app}}}[{w}]))"
    return {
        # % of requests answered without a 5xx
        "request-success-rate": f"100 * {ok} / {requests}",
        # p99 of the replica's request time, in ms
        "request-duration": "1000 * histogram_quantile(0.99, sum by (le) ("
        f"rate(ray_gantry_request_latency_seconds_bucket{{{gantry}}}[{w}])))",
        # % of requests Serve's replicas failed with an exception
        "serve-error-rate": f"100 * {serve_errors} / {serve_requests}",
        # p99 of Serve's processing latency, in ms
        "serve-latency-p99": "histogram_quantile(0.99, sum by (le) ("
        f"rate(ray_serve_deployment_processing_latency_ms_bucket{{{app}}}[{w}])))",
    }


@dataclass(frozen=True)
class CheckResult:
    name: str
    value: float | None  # None: no data
    min: float | None
    max: float | None

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        if self.min is not None and self.value < self.min:
            return False
        return not (self.max is not None and self.value > self.max)

    def describe(self) -> str:
        bound = " and ".join(
            s for s in (f">= {self.min:g}" if self.min is not None else "",
                        f"<= {self.max:g}" if self.max is not None else "") if s
        )  # fmt: skip
        shown = "no data" if self.value is None else f"{self.value:.4g}"
        return f"{self.name} = {shown} (want {bound})"


def run_check(prom: PromQL, spec: ServiceSpec, version: str, check: MetricCheck) -> CheckResult:
    query = queries(spec.name, version, duration_s(check.interval))[check.name]
    tr = check.threshold_range
    assert tr is not None  # ServiceSpec fills the SLO-backed ones
    return CheckResult(check.name, prom.scalar(query), tr.min, tr.max)

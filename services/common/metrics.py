"""The Prometheus metrics every Gantry service exports. THE place their names are defined.

Replicas record them with `ray.serve.metrics`; Ray's metrics agent on each node exports them on
its metrics-export port (`ray start --metrics-export-port`, default 8080), prefixed with `ray_`.
Names below are exactly what a scrape of that port returns (verified by
tests/services/test_metrics.py against a running replica).

Gantry series (all carry `service` and `version`; Ray adds `deployment`, `replica`,
`application`, plus its own `SessionName`, `Component`, `WorkerId`, `NodeAddress` and
`Version` = the Ray version - capital V, not ours). A series appears after its first sample.

- `ray_gantry_requests_total` (counter) - inference requests (every POST) answered by a replica.
  Labels: service, version, outcome (`success` 2xx | `client_error` 4xx | `server_error` 5xx),
  code (HTTP status, e.g. "200", "422", "500").
- `ray_gantry_request_latency_seconds_{bucket,sum,count}` (histogram, seconds) - time a replica
  spends on one inference request: body read, validation, batch wait, inference.
  Labels: service, version, outcome.
- `ray_gantry_inference_latency_seconds_{bucket,sum,count}` (histogram, seconds) - one model call
  on one batch. Labels: service, version, device (`cpu` | `cuda`).
- `ray_gantry_batch_size_{bucket,sum,count}` (histogram, requests) - requests merged into one
  model call by the replica's ModelBatcher. Labels: service, version.
- `ray_gantry_model_ready` (gauge, 0/1) - 1 once the model is loaded and warm-up passed; re-set at
  every Serve health check (health_check_period_s). Labels: service, version, device.

PromQL the rollout driver and Flagger use (canary = its `version`):
  success rate  sum(rate(ray_gantry_requests_total{service="embedder",version="v2",
                     outcome!="server_error"}[1m])) / sum(rate(ray_gantry_requests_total{
                     service="embedder",version="v2"}[1m]))
  p99 latency   histogram_quantile(0.99, sum by (le) (rate(
                     ray_gantry_request_latency_seconds_bucket{service="embedder",version="v2"}[1m])))

Ray Serve's built-in series (no `version` label: select by `deployment`/`application`), scraped
from Ray 2.60 (all milliseconds where the name says ms):
- `ray_serve_num_ongoing_requests_at_replicas` (gauge, from each handle/proxy router: requests
  assigned to the deployment's replicas and not finished; labels deployment, application, handle,
  actor_id) - the in-flight signal for HPA/autoscaling.
- `ray_serve_replica_processing_queries` (gauge, per replica: requests executing now).
- `ray_serve_deployment_queued_queries` (gauge, per router: requests waiting for a replica).
- `ray_serve_num_ongoing_http_requests` (gauge, per proxy).
- `ray_serve_deployment_request_counter_total`, `ray_serve_deployment_error_counter_total`
  (counters, per replica), `ray_serve_deployment_processing_latency_ms_{bucket,sum,count}`.
- `ray_serve_num_http_requests_total`, `ray_serve_num_http_error_requests_total`,
  `ray_serve_http_request_latency_ms_{bucket,sum,count}` (per proxy; labels route, method,
  application; `error_code` on the error counter). Counters appear after their first event.
- `ray_serve_deployment_replica_healthy` (gauge 0/1), `ray_serve_autoscaling_target_replicas`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from ray.serve import metrics

# Series names as scraped (the contract other components query), checked by the tests.
SERIES = (
    "ray_gantry_requests_total",
    "ray_gantry_request_latency_seconds_bucket",
    "ray_gantry_request_latency_seconds_sum",
    "ray_gantry_request_latency_seconds_count",
    "ray_gantry_inference_latency_seconds_bucket",
    "ray_gantry_inference_latency_seconds_count",
    "ray_gantry_batch_size_bucket",
    "ray_gantry_batch_size_count",
    "ray_gantry_model_ready",
)
# Ray Serve's own series used by Gantry (no `version` label), as scraped.
RAY_SERVE_SERIES = (
    "ray_serve_num_ongoing_requests_at_replicas",
    "ray_serve_replica_processing_queries",
    "ray_serve_deployment_queued_queries",
    "ray_serve_deployment_request_counter_total",
    "ray_serve_deployment_processing_latency_ms_bucket",
    "ray_serve_num_http_requests_total",
    "ray_serve_deployment_replica_healthy",
)

# Seconds. Covers a 2 ms classifier call up to a 10 s overloaded CPU embedder request.
LATENCY_BUCKETS_S = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
# Requests per batch: powers of two up to the largest sensible max_batch_size.
BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128]


M = TypeVar("M", metrics.Counter, metrics.Histogram, metrics.Gauge)


def _labelled(metric: M, tags: dict[str, str]) -> M:
    # ray.serve.metrics' set_default_tags returns None (unlike ray.util.metrics'): no chaining.
    metric.set_default_tags(tags)
    return metric


def outcome_of(status: int) -> str:
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "success"


class ServiceMetrics:
    """One replica's metric handles, pre-labelled with its service, version and device."""

    def __init__(self, service: str, version: str, device: str) -> None:
        # Copies per metric: Ray Serve adds its own tags to the dict it is given, in place.
        base = {"service": service, "version": version}
        self.requests = _labelled(
            metrics.Counter(
                "gantry_requests",
                description="Inference requests answered, by outcome and HTTP status.",
                tag_keys=("service", "version", "outcome", "code"),
            ),
            dict(base),
        )
        self.request_latency = _labelled(
            metrics.Histogram(
                "gantry_request_latency_seconds",
                description="Replica time per inference request, seconds.",
                boundaries=LATENCY_BUCKETS_S,
                tag_keys=("service", "version", "outcome"),
            ),
            dict(base),
        )
        self.inference_latency = _labelled(
            metrics.Histogram(
                "gantry_inference_latency_seconds",
                description="Model call time per batch, seconds.",
                boundaries=LATENCY_BUCKETS_S,
                tag_keys=("service", "version", "device"),
            ),
            {**base, "device": device},
        )
        self.batch_size = _labelled(
            metrics.Histogram(
                "gantry_batch_size",
                description="Requests merged into one model call.",
                boundaries=BATCH_SIZE_BUCKETS,
                tag_keys=("service", "version"),
            ),
            dict(base),
        )
        self.ready = _labelled(
            metrics.Gauge(
                "gantry_model_ready",
                description="1 once the model is loaded and warm-up inference passed.",
                tag_keys=("service", "version", "device"),
            ),
            {**base, "device": device},
        )
        self.ready.set(0)

    def observe_request(self, status: int, seconds: float) -> None:
        outcome = outcome_of(status)
        self.requests.inc(tags={"outcome": outcome, "code": str(status)})
        self.request_latency.observe(seconds, tags={"outcome": outcome})

    @contextmanager
    def model_call(self, batch_requests: int) -> Iterator[None]:
        """Time one model call and record how many requests it served."""
        self.batch_size.observe(batch_requests)
        start = time.perf_counter()
        yield
        self.inference_latency.observe(time.perf_counter() - start)

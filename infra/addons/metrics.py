"""The custom metric the serving layer's HPAs target, defined once.

Ray Serve's ingress exports `serve_num_ongoing_http_requests` (ray/serve/_private/
request_ingress_metrics.py in Ray 2.60; Ray prefixes every exported metric with `ray_`): its
HAProxy manager samples HAProxy's backend sessions (`serve.ingress: haproxy`), its Python proxy
counts its own (`proxy`). Each serving pod runs one single-node Serve instance with one
ingress, so the gauge summed per pod is the number of requests that pod is working on or
queueing: the in-flight load the HPA should keep near its target. prometheus-adapter serves it
on the custom metrics API as `IN_FLIGHT_METRIC` for every pod that Prometheus scrapes with
`namespace` and `pod` labels (the service's ServiceMonitor adds both).
"""

from __future__ import annotations

from typing import Any

# The Prometheus series (a gauge, one per Serve ingress, i.e. per pod).
RAY_IN_FLIGHT_SERIES = "ray_serve_num_ongoing_http_requests"
# The name HPAs use (`type: Pods`, `metric.name`): average in-flight requests per pod.
IN_FLIGHT_METRIC = "gantry_serve_inflight_requests"


def adapter_rules() -> list[dict[str, Any]]:
    """prometheus-adapter `rules.custom`: the series above, per pod, as IN_FLIGHT_METRIC."""
    return [
        {
            "seriesQuery": f'{RAY_IN_FLIGHT_SERIES}{{namespace!="",pod!=""}}',
            "resources": {
                "overrides": {
                    "namespace": {"resource": "namespace"},
                    "pod": {"resource": "pod"},
                }
            },
            "name": {"matches": f"^{RAY_IN_FLIGHT_SERIES}$", "as": IN_FLIGHT_METRIC},
            # Sum over the ingress' label sets (node_id, ...) so each pod yields one value.
            "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        }
    ]

"""Metrics the HPA reads: metrics-server (resource metrics: CPU, memory) and prometheus-adapter
(custom metrics: in-flight requests per pod, see metrics.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.addons.metrics import adapter_rules
from infra.addons.monitoring import MONITORING_NAMESPACE, PROMETHEUS_PORT, PROMETHEUS_SERVICE
from infra.addons.release import ClusterTarget, helm_release


@dataclass(frozen=True)
class AutoscalingArgs:
    target: ClusterTarget
    prometheus: pulumi.Resource  # the adapter reads it


class Autoscaling(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: AutoscalingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:platform:Autoscaling", name, None, opts)
        target = args.target
        # kube-system exists in every cluster; metrics-server traditionally lives there.
        self.metrics_server = helm_release(
            "metrics-server",
            "metrics-server",
            "kube-system",
            target,
            pulumi.ResourceOptions(parent=self),
        )
        self.adapter = helm_release(
            "prometheus-adapter",
            "prometheus-adapter",
            MONITORING_NAMESPACE,
            target,
            pulumi.ResourceOptions(parent=self, depends_on=[args.prometheus]),
            {
                "prometheus": {
                    "url": f"http://{PROMETHEUS_SERVICE}.{MONITORING_NAMESPACE}.svc",
                    "port": PROMETHEUS_PORT,
                },
                "rules": {"custom": adapter_rules()},
            },
        )
        self.register_outputs({})

"""Flagger (canary analysis on Istio, metrics from this Prometheus) and its load tester.

The load tester runs with a sidecar so the load it generates reaches meshed services over mTLS.
Flagger itself has no sidecar and calls the load tester's webhook port in plaintext, so that one
port (and only on the load tester) accepts plaintext: a narrow, explicit exception to STRICT.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.addons.monitoring import PROMETHEUS_URL
from infra.addons.namespaces import namespace
from infra.addons.release import ClusterTarget, helm_release

FLAGGER_NAMESPACE = "flagger-system"
LOADTESTER_RELEASE = "flagger-loadtester"
LOADTESTER_POD_LABELS = {"app": "loadtester"}  # the chart's pod label (its name)
LOADTESTER_PORT = 8080  # container port; the Service maps 80 -> 8080
LOADTESTER_URL = f"http://{LOADTESTER_RELEASE}.{FLAGGER_NAMESPACE}/"


@dataclass(frozen=True)
class DeliveryArgs:
    target: ClusterTarget
    loadtester: bool  # install Flagger's load tester (canary webhooks)
    prometheus: pulumi.Resource  # Flagger's metrics server
    istiod: pulumi.Resource  # the mesh Flagger routes with; the load tester is meshed


class Delivery(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: DeliveryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:platform:Delivery", name, None, opts)
        target, istiod = args.target, args.istiod
        ns = namespace(FLAGGER_NAMESPACE, "baseline", pulumi.ResourceOptions(parent=self))
        self.flagger = helm_release(
            "flagger",
            "flagger",
            ns.metadata.name,
            target,
            pulumi.ResourceOptions(parent=self, depends_on=[ns, args.prometheus, istiod]),
            {"metricsServer": PROMETHEUS_URL},
        )
        self.loadtester: k8s.helm.v3.Release | None = None
        if args.loadtester:
            self.loadtester = helm_release(
                LOADTESTER_RELEASE,
                "flagger-loadtester",
                ns.metadata.name,
                target,
                pulumi.ResourceOptions(parent=self, depends_on=[ns, istiod]),
            )
            k8s.apiextensions.CustomResource(
                "loadtester-webhook-plaintext",
                api_version="security.istio.io/v1",
                kind="PeerAuthentication",
                metadata={"name": "loadtester-webhook", "namespace": ns.metadata.name},
                spec={
                    "selector": {"matchLabels": LOADTESTER_POD_LABELS},
                    "mtls": {"mode": "STRICT"},
                    "portLevelMtls": {str(LOADTESTER_PORT): {"mode": "PERMISSIVE"}},
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[istiod]),
            )
        self.register_outputs({})

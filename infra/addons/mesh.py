"""Istio: base (CRDs) -> istio-cni -> istiod -> an ingress gateway; mesh-wide mTLS STRICT.

istio-cni sets up each pod's traffic redirection from the node, so meshed pods need no
NET_ADMIN init container and team namespaces can enforce Pod Security `restricted`
(https://istio.io/latest/docs/setup/additional-setup/pod-security-admission/). The CNI node
agent needs hostPath, hence `privileged` on istio-system only.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.addons.namespaces import namespace
from infra.addons.release import ClusterTarget, helm_release

ISTIO_NAMESPACE = "istio-system"
GATEWAY_NAMESPACE = "istio-ingress"
# The gateway chart names its Deployment/Service/ServiceAccount after the release and labels
# the pods `istio: <release without "istio-">`, the selector of the Gateway below.
GATEWAY_RELEASE = "istio-ingressgateway"
GATEWAY_SELECTOR = {"istio": "ingressgateway"}
# The Istio Gateway object every service's VirtualService (and Flagger Canary) attaches to.
GATEWAY_NAME = "gantry-gateway"
GATEWAY_HTTP_PORT = 80


@dataclass(frozen=True)
class MeshArgs:
    target: ClusterTarget
    domain: str  # the gateway accepts every host *.<domain>


class Mesh(pulumi.ComponentResource):
    """The service mesh every model service runs in."""

    def __init__(
        self, name: str, args: MeshArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:platform:Mesh", name, None, opts)
        target = args.target

        def after(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=list(deps))

        system_ns = namespace(ISTIO_NAMESPACE, "privileged", after())
        self.base = helm_release(
            "istio-base", "istio-base", system_ns.metadata.name, target, after(system_ns)
        )
        cni = helm_release(
            "istio-cni", "istio-cni", system_ns.metadata.name, target, after(self.base)
        )
        self.istiod = helm_release(
            "istiod", "istiod", system_ns.metadata.name, target, after(self.base, cni)
        )
        gateway_ns = namespace(GATEWAY_NAMESPACE, "baseline", after())
        self.gateway = helm_release(
            GATEWAY_RELEASE,
            "istio-gateway",
            gateway_ns.metadata.name,
            target,
            after(gateway_ns, self.istiod),
        )
        # Mesh-wide: a PeerAuthentication named `default` in the root namespace applies to
        # every workload; STRICT refuses plaintext to any sidecar.
        self.mtls = k8s.apiextensions.CustomResource(
            "mesh-mtls-strict",
            api_version="security.istio.io/v1",
            kind="PeerAuthentication",
            metadata={"name": "default", "namespace": ISTIO_NAMESPACE},
            spec={"mtls": {"mode": "STRICT"}},
            opts=after(self.istiod),
        )
        self.ingress = k8s.apiextensions.CustomResource(
            "ingress-gateway",
            api_version="networking.istio.io/v1",
            kind="Gateway",
            metadata={"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
            spec={
                "selector": GATEWAY_SELECTOR,
                "servers": [
                    {
                        "port": {"number": GATEWAY_HTTP_PORT, "name": "http", "protocol": "HTTP"},
                        "hosts": [f"*.{args.domain}"],
                    }
                ],
            },
            opts=after(self.gateway),
        )
        self.register_outputs({"gateway": GATEWAY_NAME})

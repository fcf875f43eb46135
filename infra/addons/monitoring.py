"""kube-prometheus-stack (Prometheus, Alertmanager, Grafana, kube-state-metrics, node-exporter),
the dashboards as ConfigMaps for Grafana's sidecar, and the PrometheusRules under platform/.

Prometheus selects ServiceMonitors/PodMonitors/PrometheusRules in every namespace (values.yaml).
It carries an Istio sidecar that only writes the mesh certificates to a shared volume (no traffic
capture), so it can scrape meshed pods over mTLS while the mesh is STRICT (MESH_SCRAPE below;
https://istio.io/latest/docs/ops/integrations/prometheus/#tls-settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from gantry import project
from gantry.pools import POOL_KIND_LABEL, POOL_LABEL
from infra.addons.namespaces import namespace
from infra.addons.release import ClusterTarget, helm_release

MONITORING_NAMESPACE = "monitoring"
# values.yaml sets fullnameOverride: kps; the chart names its service <fullname>-prometheus.
PROMETHEUS_SERVICE = "kps-prometheus"
PROMETHEUS_PORT = 9090
# Prometheus' service account (the chart's <fullname>-prometheus), for RBAC on scrape targets.
PROMETHEUS_SERVICE_ACCOUNT = "kps-prometheus"
PROMETHEUS_URL = (
    f"http://{PROMETHEUS_SERVICE}.{MONITORING_NAMESPACE}.svc.cluster.local:{PROMETHEUS_PORT}"
)
# Grafana's dashboard sidecar loads ConfigMaps with this label (values.yaml, grafana.sidecar).
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
# Endpoint settings for a ServiceMonitor scraping a meshed pod (mTLS with the certificates
# Prometheus' sidecar writes to /etc/prom-certs, mounted in values.yaml; a PodMonitor's
# tlsConfig cannot take certificate files).
MESH_SCRAPE: dict[str, Any] = {
    "scheme": "https",
    "tlsConfig": {
        "caFile": "/etc/prom-certs/root-cert.pem",
        "certFile": "/etc/prom-certs/cert-chain.pem",
        "keyFile": "/etc/prom-certs/key.pem",
        # Istio certificates carry SPIFFE URIs, not DNS names.
        "insecureSkipVerify": True,
    },
}


# Istio's sidecars' own request metrics (istio_requests_total, istio_request_duration_*), which
# Flagger's built-in request-success-rate/request-duration checks query. Envoy serves them on
# its container port `http-envoy-prom` (15090), which the sidecar never captures, so plain
# HTTP works under STRICT mTLS; the merged port 15020 is avoided because it would also re-export
# the app's (Ray's) metrics that the services' ServiceMonitors already scrape (double counting).
ENVOY_STATS_MONITOR: dict[str, Any] = {
    # Every injected pod carries this label (set by the sidecar injector).
    "selector": {"matchExpressions": [{"key": "security.istio.io/tlsMode", "operator": "Exists"}]},
    "namespaceSelector": {"any": True},
    "podMetricsEndpoints": [
        {"port": "http-envoy-prom", "path": "/stats/prometheus", "interval": "15s"}
    ],
}


def dashboard_files(directory: Path | None = None) -> list[Path]:
    directory = directory or project.platform_dir() / "observability" / "dashboards"
    return sorted(directory.glob("*.json"))


def rule_files(directory: Path | None = None) -> list[Path]:
    return sorted((directory or project.rules_dir()).glob("*.yaml"))


@dataclass(frozen=True)
class MonitoringArgs:
    target: ClusterTarget
    storage_class: str  # Prometheus' persistent volume
    grafana: bool
    alertmanager: bool
    mesh_ready: pulumi.Resource  # istiod, the sidecar injector


class Monitoring(pulumi.ComponentResource):
    """Metrics, alerts and dashboards for the platform and every service."""

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:platform:Monitoring", name, None, opts)
        # node-exporter needs hostNetwork/hostPID/hostPath.
        ns = namespace(MONITORING_NAMESPACE, "privileged", pulumi.ResourceOptions(parent=self))
        computed = {
            "grafana": {"enabled": args.grafana},
            "alertmanager": {"enabled": args.alertmanager},
            # Pool labels on kube_node_labels, for the GPU pool dashboard.
            "kube-state-metrics": {
                "metricLabelsAllowlist": [f"nodes=[{POOL_LABEL},{POOL_KIND_LABEL}]"]
            },
            "prometheus": {
                "prometheusSpec": {
                    "storageSpec": {
                        "volumeClaimTemplate": {"spec": {"storageClassName": args.storage_class}}
                    }
                }
            },
        }
        # After istiod: Prometheus' pod asks for a sidecar, which needs the injector running.
        self.stack = helm_release(
            "kube-prometheus-stack",
            "kube-prometheus-stack",
            ns.metadata.name,
            args.target,
            pulumi.ResourceOptions(parent=self, depends_on=[ns, args.mesh_ready]),
            computed,
        )
        for path in dashboard_files():
            k8s.core.v1.ConfigMap(
                f"dashboard-{path.stem}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"dashboard-{path.stem}",
                    namespace=MONITORING_NAMESPACE,
                    labels=DASHBOARD_LABEL,
                ),
                data={path.name: path.read_text()},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]),
            )
        for path in rule_files():
            k8s.apiextensions.CustomResource(
                f"rules-{path.stem}",
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata={"name": f"gantry-{path.stem}", "namespace": MONITORING_NAMESPACE},
                spec=yaml.safe_load(path.read_text()),
                # The chart installs the PrometheusRule CRD.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.stack]),
            )
        k8s.apiextensions.CustomResource(
            "envoy-stats",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": "envoy-stats", "namespace": MONITORING_NAMESPACE},
            spec=ENVOY_STATS_MONITOR,
            # The chart installs the PodMonitor CRD.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.stack]),
        )
        self.register_outputs({"prometheus_url": PROMETHEUS_URL})

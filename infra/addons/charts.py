"""Every Helm chart the platform layer installs: name, pinned version, repository.

Versions are pinned so that `pulumi up` is reproducible; bump them here, deliberately, and re-read
the chart's values documentation for every field set in `platform/<addon>/values.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass

ISTIO_REPO = "https://istio-release.storage.googleapis.com/charts"
PROMETHEUS_COMMUNITY_REPO = "https://prometheus-community.github.io/helm-charts"
METRICS_SERVER_REPO = "https://kubernetes-sigs.github.io/metrics-server/"
FLAGGER_REPO = "https://flagger.app"
NVIDIA_DEVICE_PLUGIN_REPO = "https://nvidia.github.io/k8s-device-plugin"
DCGM_EXPORTER_REPO = "https://nvidia.github.io/dcgm-exporter/helm-charts"
# run:ai publishes the fake GPU operator as an OCI chart (the repository is part of the reference).
FAKE_GPU_OPERATOR_OCI = "oci://ghcr.io/run-ai/fake-gpu-operator/fake-gpu-operator"

ISTIO_VERSION = "1.27.1"  # supports Kubernetes 1.29-1.33 (our SUPPORTED_K8S_VERSIONS)


@dataclass(frozen=True)
class Chart:
    chart: str  # chart name in `repo`, or a full oci:// reference when repo is None
    version: str
    repo: str | None

    @property
    def source(self) -> str:
        """Where the chart comes from: the repository URL or the OCI reference."""
        return self.repo or self.chart


# Keyed by addon: also the folder of its values under platform/.
CHARTS: dict[str, Chart] = {
    "istio-base": Chart("base", ISTIO_VERSION, ISTIO_REPO),
    "istio-cni": Chart("cni", ISTIO_VERSION, ISTIO_REPO),
    "istiod": Chart("istiod", ISTIO_VERSION, ISTIO_REPO),
    "istio-gateway": Chart("gateway", ISTIO_VERSION, ISTIO_REPO),
    "kube-prometheus-stack": Chart("kube-prometheus-stack", "75.15.0", PROMETHEUS_COMMUNITY_REPO),
    "prometheus-adapter": Chart("prometheus-adapter", "4.11.0", PROMETHEUS_COMMUNITY_REPO),
    "metrics-server": Chart("metrics-server", "3.13.0", METRICS_SERVER_REPO),
    "flagger": Chart("flagger", "1.43.0", FLAGGER_REPO),
    "flagger-loadtester": Chart("loadtester", "0.39.0", FLAGGER_REPO),
    "fake-gpu-operator": Chart(FAKE_GPU_OPERATOR_OCI, "0.0.63", None),
    "nvidia-device-plugin": Chart("nvidia-device-plugin", "0.18.2", NVIDIA_DEVICE_PLUGIN_REPO),
    "dcgm-exporter": Chart("dcgm-exporter", "4.8.3", DCGM_EXPORTER_REPO),
}

"""Every Helm chart Gantry installs (the platform layer's, and Karpenter's on EKS): name, pinned
version, repository.

Versions are pinned so that `pulumi up` is reproducible; bump them here, deliberately. The offline
checks render exactly these versions with real Helm (infra/helm/) and reject a values key the
chart does not read, so a bump shows which of `platform/<addon>/values.yaml` no longer applies.
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
# Karpenter publishes its charts on public ECR only (OCI); the CRDs come as a chart of their own.
KARPENTER_OCI = "oci://public.ecr.aws/karpenter"
KARPENTER_VERSION = "1.14.1"
# Batch jobs: KubeRay runs a job's Ray cluster (RayJob), Kueue queues it (infra/addons/batch.py).
KUBERAY_REPO = "https://ray-project.github.io/kuberay-helm/"
KUEUE_OCI = "oci://registry.k8s.io/kueue/charts/kueue"

# Documented for Kubernetes 1.29-1.33; the EKS stack's 1.35 is beyond that until Istio is bumped
# (docs/limitations.md). 1.27.1 is the Istio whose charts are in the pinned archive set.
ISTIO_VERSION = "1.27.1"


@dataclass(frozen=True)
class Chart:
    chart: str  # chart name in `repo`, or a full oci:// reference when repo is None
    version: str
    repo: str | None

    @property
    def name(self) -> str:
        """The chart's own name (Chart.yaml), also for an OCI reference."""
        return self.chart.rsplit("/", 1)[-1]

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
    # Flagger and its load tester are released together: keep the pair (1.44.0 ships 0.38.0).
    "flagger": Chart("flagger", "1.44.0", FLAGGER_REPO),
    "flagger-loadtester": Chart("loadtester", "0.38.0", FLAGGER_REPO),
    "fake-gpu-operator": Chart(FAKE_GPU_OPERATOR_OCI, "0.0.63", None),
    "nvidia-device-plugin": Chart("nvidia-device-plugin", "0.18.2", NVIDIA_DEVICE_PLUGIN_REPO),
    "dcgm-exporter": Chart("dcgm-exporter", "4.8.2", DCGM_EXPORTER_REPO),
    # Installed by the cluster layer on EKS (infra/cluster/karpenter.py); keep the pair together.
    "karpenter-crd": Chart(f"{KARPENTER_OCI}/karpenter-crd", KARPENTER_VERSION, None),
    "karpenter": Chart(f"{KARPENTER_OCI}/karpenter", KARPENTER_VERSION, None),
    # KubeRay 1.7 and Kueue 0.19: Kueue's rayjob integration builds on this KubeRay's API
    # (ray.io/v1); bump them together and re-read infra/jobs/rayjob.py's submission mode.
    "kuberay-operator": Chart("kuberay-operator", "1.7.0", KUBERAY_REPO),
    "kueue": Chart(KUEUE_OCI, "0.19.2", None),
}


def chart_of(chart: str, version: str) -> Chart:
    """The pin a release was made from (its `chart` and `version` inputs)."""
    for pinned in CHARTS.values():
        if (pinned.chart, pinned.version) == (chart, version):
            return pinned
    raise KeyError(f"no pinned chart {chart} {version} in infra/addons/charts.py")


def addon_of(pinned: Chart) -> str:
    """The add-on (folder under platform/) a pin belongs to."""
    return next(addon for addon, c in CHARTS.items() if c == pinned)

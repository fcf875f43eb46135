"""Every Helm release: pinned, from a named repository, in its namespace, in the right order."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gantry.pools import FAKE_GPU_POOL_LABEL
from infra.addons.charts import CHARTS
from infra.addons.metrics import IN_FLIGHT_METRIC, RAY_IN_FLIGHT_SERIES
from infra.addons.monitoring import PROMETHEUS_SERVICE
from infra.checks import is_custom_resource
from infra.render import Resource, ResourceIndex
from tests.conftest import STACKS

Program = Callable[[str], ResourceIndex]


def releases(index: ResourceIndex) -> dict[str, Resource]:
    return {r.inputs["name"]: r for r in index.helm_releases() if r.layer == "platform"}


def depends(index: ResourceIndex, r: Resource, name: str) -> bool:
    """True when `r` waits for the release or object registered as `name` (directly)."""
    return any(index._by_urn[u].name == name for u in r.depends_on if u in index._by_urn)


@pytest.mark.parametrize("stack", STACKS)
def test_every_release_is_pinned_named_and_namespaced(program: Program, stack: str) -> None:
    found = releases(program(stack))
    assert found, "the platform layer installs no release"
    known = {(c.chart, c.version) for c in CHARTS.values()}
    for name, r in found.items():
        version = r.inputs.get("version", "")
        assert version and version[0].isdigit() and "*" not in version, f"{name}: unpinned"
        assert (r.inputs["chart"], version) in known, f"{name}: not from charts.py"
        repo = (r.inputs.get("repositoryOpts") or {}).get("repo")
        assert repo or r.inputs["chart"].startswith("oci://"), f"{name}: no repository"
        assert r.inputs.get("namespace"), f"{name}: no namespace"
        assert r.inputs.get("createNamespace") is not True, f"{name}: namespace made by Helm"


@pytest.mark.parametrize("stack", STACKS)
def test_release_order(program: Program, stack: str) -> None:
    index = program(stack)
    rel = releases(index)
    # Istio: base (CRDs) -> cni -> istiod -> gateway.
    assert depends(index, rel["istio-cni"], "istio-base")
    assert depends(index, rel["istiod"], "istio-base")
    assert depends(index, rel["istiod"], "istio-cni")
    assert depends(index, rel["istio-ingressgateway"], "istiod")
    # Prometheus before the adapter and Flagger.
    assert depends(index, rel["prometheus-adapter"], "kube-prometheus-stack")
    assert depends(index, rel["flagger"], "kube-prometheus-stack")
    # Prometheus' pod asks for a sidecar: istiod's injector must exist first.
    assert depends(index, rel["kube-prometheus-stack"], "istiod")
    # The batch add-ons' ServiceMonitors need Prometheus' CRDs; Kueue starts with KubeRay's.
    assert depends(index, rel["kuberay-operator"], "kube-prometheus-stack")
    assert depends(index, rel["kueue"], "kube-prometheus-stack")
    assert depends(index, rel["kueue"], "kuberay-operator")


@pytest.mark.parametrize("stack", STACKS)
def test_custom_resources_wait_for_their_crds(program: Program, stack: str) -> None:
    index = program(stack)
    crd_release = {
        "security.istio.io": {"istiod", "istio-base"},
        "networking.istio.io": {"istio-ingressgateway", "istiod", "istio-base"},
        "monitoring.coreos.com": {"kube-prometheus-stack"},
        "kueue.x-k8s.io": {"kueue"},
    }
    crs = [r for r in index.k8s_objects("platform") if is_custom_resource(r.manifest())]
    assert crs
    for r in crs:
        group = r.inputs["apiVersion"].split("/")[0]
        assert any(depends(index, r, rel) for rel in crd_release[group]), (
            f"{r.type} {r.name} does not wait for the release installing {group}"
        )


def test_kind_gets_the_fake_gpu_operator_eks_the_nvidia_stack(program: Program) -> None:
    kind, eks = releases(program("sandbox")), releases(program("eks"))
    assert "fake-gpu-operator" in kind
    assert not {"nvidia-device-plugin", "dcgm-exporter"} & kind.keys()
    assert {"nvidia-device-plugin", "dcgm-exporter"} <= eks.keys()
    assert "fake-gpu-operator" not in eks
    topology = kind["fake-gpu-operator"].inputs["values"]["topology"]
    assert topology["nodePools"]["gpu"]["gpuCount"] == 1  # gpus_per_node of the sandbox's pool
    # Not gantry.dev/pool: every node has that one (tests/infra/helm checks the rendered chart).
    assert topology["nodePoolLabelKey"] == FAKE_GPU_POOL_LABEL


def test_metrics_server_skips_kubelet_tls_only_on_kind(program: Program) -> None:
    kind = releases(program("sandbox"))["metrics-server"].inputs["values"]
    eks = releases(program("eks"))["metrics-server"].inputs["values"]
    assert "--kubelet-insecure-tls" in kind["args"]
    assert "--kubelet-insecure-tls" not in eks.get("args", [])


@pytest.mark.parametrize("stack", STACKS)
def test_prometheus_storage_and_discovery(program: Program, stack: str) -> None:
    values = releases(program(stack))["kube-prometheus-stack"].inputs["values"]
    spec = values["prometheus"]["prometheusSpec"]
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"], "Prometheus needs a StorageClass from the cluster layer"
    assert claim["resources"]["requests"]["storage"]
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
    assert spec["podMonitorNamespaceSelector"] == {}  # every namespace


@pytest.mark.parametrize("stack", STACKS)
def test_adapter_serves_the_inflight_metric_from_this_prometheus(
    program: Program, stack: str
) -> None:
    values = releases(program(stack))["prometheus-adapter"].inputs["values"]
    assert PROMETHEUS_SERVICE in values["prometheus"]["url"]
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == IN_FLIGHT_METRIC
    assert rule["seriesQuery"].startswith(RAY_IN_FLIGHT_SERIES)
    assert values["rules"]["default"] is False


@pytest.mark.parametrize("stack", STACKS)
def test_flagger_uses_istio_and_this_prometheus(program: Program, stack: str) -> None:
    values = releases(program(stack))["flagger"].inputs["values"]
    assert values["meshProvider"] == "istio"
    assert PROMETHEUS_SERVICE in values["metricsServer"]


def test_time_slicing_reaches_the_device_plugin(run_config, program: Program) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import stack_config

    cfg = stack_config("eks")
    sliced = cfg.model_copy(
        update={"platform": cfg.platform.model_copy(update={"time_slicing_replicas": 4})}
    )
    rel = releases(run_config(sliced, "eks"))
    config = rel["nvidia-device-plugin"].inputs["values"]["config"]["map"]["default"]
    assert "replicas: 4" in config and "nvidia.com/gpu" in config
    plain = releases(program("eks"))["nvidia-device-plugin"].inputs["values"]
    assert "timeSlicing" not in plain["config"]["map"]["default"]

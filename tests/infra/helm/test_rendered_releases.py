"""Each release as real Helm renders it from the pinned archive: values a chart does not read are
errors naming the file and key, and what the rendered objects do is what Gantry means."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.pools import POOL_KIND_LABEL
from infra.addons.charts import CHARTS
from infra.checks.apply_set import ApplySet
from infra.checks.chart_values import schema_problems, unread_keys
from infra.checks.offline import values_problems
from infra.cluster.kind import KindClusterArgs, kind_config
from infra.helm import archives
from infra.helm.template import ReleaseInputs, render_release
from tests.conftest import REPO, needs_charts, stack_config

Checked = Callable[[str], tuple[ApplySet, list[str]]]


@pytest.fixture(autouse=True)
def _charts() -> None:
    needs_charts()


def _objects(objects: ApplySet, release: str, kind: str) -> list[dict[str, Any]]:
    return [e.manifest for e in objects if e.owner_name == release and e.manifest["kind"] == kind]


def test_every_pin_is_an_archive_in_the_chart_index() -> None:
    folder = archives.find_archive(CHARTS["flagger"]).parent
    if not (folder / "index.json").is_file():
        pytest.skip(f"{folder} has no index.json (pulled by `make charts`, verified there)")
    index = json.loads((folder / "index.json").read_text())
    listed = {(c["chart"], c["version"]) for c in index}
    assert {(c.name, c.version) for c in CHARTS.values()} <= listed


def test_a_missing_archive_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(archives.CHARTS_ENV, str(tmp_path))
    problems = archives.missing_charts()
    assert len(problems) == len(set(CHARTS.values()))
    assert "make charts" in problems[0]


def test_a_key_the_chart_does_not_read_names_the_file_and_key(tmp_path: Path) -> None:
    """fake-gpu-operator 0.0.63 has no statusExporter.serviceMonitor (no template reads it)."""
    (tmp_path / "fake-gpu-operator").mkdir()
    values = {
        "statusExporter": {"serviceMonitor": {"enabled": True}},
        "topology": {"nodePools": {"gpu": {}}},
    }
    (tmp_path / "fake-gpu-operator" / "values.yaml").write_text(yaml.safe_dump(values))
    rel = render_release(
        ReleaseInputs(
            "fgo", "gpu-system", CHARTS["fake-gpu-operator"].chart, "0.0.63", values, "1.34"
        )
    )
    (problem,) = values_problems({"urn": rel}, root=tmp_path)
    assert problem.startswith(f"{tmp_path.name}/fake-gpu-operator/values.yaml: ")
    assert (
        "'statusExporter.serviceMonitor' is not read by chart fake-gpu-operator 0.0.63" in problem
    )


def test_free_form_maps_take_any_key() -> None:
    values = {
        "podAnnotations": {"a/b": "c"},
        "affinity": {"nodeAffinity": {}},
        "nodeSelector": {"x": "y"},
    }
    assert unread_keys(CHARTS["metrics-server"], values) == []
    assert unread_keys(CHARTS["metrics-server"], {"replicaz": 2}) == ["replicaz"]


def test_istiod_reads_flat_values_not_pilot() -> None:
    """Istio 1.2x's istiod chart dropped the `pilot.` prefix: `pilot.cni.enabled` is ignored."""
    assert unread_keys(CHARTS["istiod"], {"pilot": {"cni": {"enabled": True}}}) == ["pilot"]
    assert unread_keys(CHARTS["istiod"], {"cni": {"enabled": True}, "meshConfig": {"x": 1}}) == []


def test_sidecars_use_istio_cni_not_a_privileged_init_container(apply_set: Checked) -> None:
    objects, _ = apply_set("sandbox")
    (injector,) = [
        m
        for m in _objects(objects, "istiod", "ConfigMap")
        if m["metadata"]["name"] == "istio-sidecar-injector"
    ]
    assert json.loads(injector["data"]["values"])["pilot"]["cni"]["enabled"] is True


def test_charts_with_a_values_schema_check_it() -> None:
    gateway = CHARTS["istio-gateway"]
    assert archives.load(gateway).schema is not None
    assert schema_problems(gateway, {}) == []
    assert schema_problems(gateway, {"replicaCount": "three"})


def test_fake_gpu_nodes_are_exactly_the_gpu_pool_workers(apply_set: Checked) -> None:
    """The fake operator treats every node carrying its nodePoolLabelKey as a GPU node."""
    objects, _ = apply_set("sandbox")
    (topology,) = [
        m
        for m in _objects(objects, "fake-gpu-operator", "ConfigMap")
        if m["metadata"]["name"] == "topology"
    ]
    key = yaml.safe_load(topology["data"]["topology.yml"])["nodePoolLabelKey"]
    nodes = kind_config(KindClusterArgs.from_config(stack_config("sandbox")))["nodes"]
    marked = [n for n in nodes if key in n.get("labels", {})]
    gpu = [n for n in nodes if n.get("labels", {}).get(POOL_KIND_LABEL) == "gpu"]
    assert marked and marked == gpu


def test_nvidia_node_agents_run_on_gpu_pool_nodes_without_nfd(apply_set: Checked) -> None:
    objects, _ = apply_set("eks")
    for release in ("nvidia-device-plugin", "dcgm-exporter"):
        daemonsets = _objects(objects, release, "DaemonSet")
        assert daemonsets, release
        for ds in daemonsets:
            spec = ds["spec"]["template"]["spec"]
            terms = spec["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]["nodeSelectorTerms"]
            keys = {x["key"] for t in terms for x in t["matchExpressions"]}
            assert keys == {POOL_KIND_LABEL}, (release, keys)  # no feature.node.kubernetes.io/*


def test_apiservices_use_the_api_version_a_real_cluster_serves(apply_set: Checked) -> None:
    """Rendered with the cluster's capabilities (not Helm's offline defaults), the adapter's
    APIServices are apiregistration.k8s.io/v1, not the v1beta1 removed in Kubernetes 1.22."""
    objects, _ = apply_set("sandbox")
    apis = _objects(objects, "prometheus-adapter", "APIService")
    assert apis and {m["apiVersion"] for m in apis} == {"apiregistration.k8s.io/v1"}


def test_render_writes_every_release_object_and_its_values(tmp_path: Path) -> None:
    import subprocess

    out = tmp_path / "render"
    proc = subprocess.run(
        [str(REPO / ".venv/bin/gantry"), "render", "--stack", "sandbox", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    flagger = out / "releases" / "flagger"
    (crds,) = (flagger / "crds").iterdir()  # as the chart ships it: flagger/crds/crd.yaml
    assert "name: canaries.flagger.app" in crds.read_text()
    assert yaml.safe_load((flagger / "values.yaml").read_text())["meshProvider"] == "istio"
    assert list((out / "releases" / "kube-prometheus-stack" / "hooks").glob("*.yaml"))
    assert (out / "platform").is_dir() and (out / "serving").is_dir()


def test_crd_heads_are_the_crds_without_their_schemas() -> None:
    """The fast path (schemas cut by indentation) agrees with a full parse for every CRD of every
    pinned chart: same objects once the schemas are dropped."""
    for pinned in set(CHARTS.values()):
        # karpenter's one required value (its templates `required` it).
        values = {"settings": {"clusterName": "c"}} if pinned.name == "karpenter" else {}
        rel = render_release(ReleaseInputs("r", "ns", pinned.chart, pinned.version, values, "1.34"))
        full = rel.crds
        for crd in full:
            for v in crd["spec"].get("versions", []):
                if "schema" in v:
                    v["schema"]["openAPIV3Schema"] = {}
        assert rel.crd_heads == full, pinned.name

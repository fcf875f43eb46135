"""The whole set `pulumi up` would apply, every Helm release rendered by real Helm from the pinned
archives: nothing twice, everything after what it needs, monitors that scrape, valid schemas.
Each rule is also shown to catch the defect it was written for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from gantry.stack import GantryConfig
from infra.checks.apply_order import duplicates, missing_before
from infra.checks.apply_set import ApplySet, releases_of
from infra.checks.monitors import monitor_problems
from infra.render import run_offline
from tests.conftest import STACKS, needs_charts, stack_config

Checked = Callable[[str], tuple[ApplySet, list[str]]]


@pytest.mark.parametrize("stack", STACKS)
def test_the_whole_apply_set_passes_every_check(apply_set: Checked, stack: str) -> None:
    objects, problems = apply_set(stack)
    assert problems == []
    stages = {e.stage for e in objects}
    assert stages >= {"object", "crds", "template", "hook"}  # hooks: kube-prometheus-stack's


def test_flaggers_crds_come_once_from_its_crds_folder(apply_set: Checked) -> None:
    objects, _ = apply_set("sandbox")
    canary_crds = [
        e for e in objects if e.key[1:] == ("CustomResourceDefinition", "", "canaries.flagger.app")
    ]
    assert [e.stage for e in canary_crds] == ["crds"]


def _one_off(program: Callable[[GantryConfig], Any]) -> ApplySet:
    """The apply set of a small program (no Helm release unless it makes one)."""
    index = run_offline(stack_config("sandbox"), "unit", program=program)
    return ApplySet(index, releases_of(index, "1.34"))


def test_flagger_with_crd_create_is_an_object_created_twice() -> None:
    needs_charts()
    from infra.addons.charts import CHARTS
    from infra.addons.release import ClusterTarget, helm_release

    def program(_: GantryConfig) -> None:
        ns = k8s.core.v1.Namespace("ns", metadata={"name": "flagger-system"})
        helm_release(
            "flagger",
            "flagger",
            ns.metadata.name,
            ClusterTarget("kind"),
            pulumi.ResourceOptions(depends_on=[ns]),
            {"crd": {"create": True}},
        )

    problems = duplicates(_one_off(program))
    assert CHARTS["flagger"].version
    assert any(
        "CustomResourceDefinition canaries.flagger.app: created twice" in p
        and "crds/" in p
        and "templates/crd.yaml" in p
        for p in problems
    ), problems


def _deployment(name: str, ns: str, priority: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x:1"}]}
    if priority:
        spec["priorityClassName"] = priority
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def test_objects_applied_before_their_namespace_or_priority_class_are_named() -> None:
    def program(_: GantryConfig) -> None:
        k8s.core.v1.Namespace("ns", metadata={"name": "team"})
        k8s.scheduling.v1.PriorityClass("pc", metadata={"name": "serving"}, value=10)
        # Both by name only: Pulumi would create them in parallel with what they need.
        k8s.apps.v1.Deployment("web", **_deployment("web", "team", "serving"))

    problems = missing_before(_one_off(program))
    assert any("Deployment team/web" in p and "Namespace team" in p for p in problems)
    assert any("PriorityClass serving" in p and "does not depend on it" in p for p in problems)


def test_objects_that_depend_on_what_they_need_pass() -> None:
    def program(_: GantryConfig) -> None:
        ns = k8s.core.v1.Namespace("ns", metadata={"name": "team"})
        pc = k8s.scheduling.v1.PriorityClass("pc", metadata={"name": "serving"}, value=10)
        group = pulumi.ComponentResource("test:index:Group", "group")  # waits for its children
        k8s.core.v1.ConfigMap(
            "cm",
            metadata={"name": "cfg", "namespace": ns.metadata.name},
            opts=pulumi.ResourceOptions(parent=group),
        )
        dep = _deployment("web", "team", "serving")
        dep["spec"]["template"]["spec"]["volumes"] = [{"name": "v", "configMap": {"name": "cfg"}}]
        k8s.apps.v1.Deployment(
            "web", **dep, opts=pulumi.ResourceOptions(depends_on=[ns, pc, group])
        )

    assert missing_before(_one_off(program)) == []


def test_a_custom_resource_needs_the_release_that_installs_its_crd() -> None:
    def program(_: GantryConfig) -> None:
        k8s.apiextensions.CustomResource(
            "mon",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": "m", "namespace": "default"},
            spec={},
        )

    (problem,) = missing_before(_one_off(program))
    assert "needs the CRD of PodMonitor.monitoring.coreos.com: none" in problem


@pytest.mark.parametrize("stack", STACKS)
def test_gpu_pods_wait_for_the_gpu_add_on_and_priority_classes(
    apply_set: Checked, stack: str
) -> None:
    objects, _ = apply_set(stack)
    embedder = next(e for e in objects if e.describe() == "Deployment ml-serving/embedder")
    made_by = {
        objects.releases[e.owner].inputs.pinned.name
        for e in objects
        if e.owner in objects.releases and objects.owner_depends_on(embedder.owner, e.owner)
    }
    assert made_by & {"fake-gpu-operator", "nvidia-device-plugin"}
    pcs = [e for e in objects if e.key[1] == "PriorityClass"]
    assert pcs and all(objects.owner_depends_on(embedder.owner, pc.owner) for pc in pcs)


def test_a_monitor_whose_job_label_no_target_carries_is_named() -> None:
    def program(_: GantryConfig) -> None:
        k8s.apiextensions.CustomResource(
            "mon",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": "envoy", "namespace": "default"},
            spec={
                "selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]},
                "jobLabel": "envoy-stats",
                "podMetricsEndpoints": [{"port": "p"}],
            },
        )

    problems = monitor_problems(_one_off(program))
    assert any("jobLabel 'envoy-stats'" in p for p in problems), problems
    assert any("no Prometheus selects it" in p for p in problems)


def test_the_fake_gpu_exporter_is_scraped_by_prometheus(apply_set: Checked) -> None:
    """kind's simulated DCGM metrics reach Prometheus: a ServiceMonitor selects the Service and
    port the fake operator's chart renders, and the rendered Prometheus selects that monitor
    (monitor_problems, part of the whole-set check, proves the selection)."""
    objects, problems = apply_set("sandbox")
    service = next(e for e in objects if e.describe() == "Service gpu-system/nvidia-dcgm-exporter")
    assert service.stage == "template"
    labels = service.manifest["metadata"]["labels"]
    ports = {p["name"] for p in service.manifest["spec"]["ports"]}
    monitors = [
        e.manifest["spec"]
        for e in objects
        if e.manifest["kind"] == "ServiceMonitor" and e.key[2] == "gpu-system"
    ]
    assert any(
        m["selector"]["matchLabels"].items() <= labels.items()
        and {ep["port"] for ep in m["endpoints"]} <= ports
        for m in monitors
    )
    assert not [p for p in problems if "gpu-system" in p]


@pytest.mark.parametrize("stack", STACKS)
def test_every_release_waits_for_the_cluster_to_be_ready(stack: str) -> None:
    """Nodes (and on EKS the storage add-on) before any Helm release: read from the graph."""
    needs_charts()
    from infra.program import build

    ready: list[pulumi.Resource] = []
    index = run_offline(
        stack_config(stack), stack, program=lambda cfg: ready.extend(build(cfg).ready)
    )
    objects = ApplySet(index, {})
    ready_urns = [
        r.urn for r in index if any((r.name, r.type) == (x._name, x._type) for x in ready)
    ]
    assert ready_urns and len(ready_urns) == len(ready)
    for release in index.helm_releases():
        if release.layer == "cluster":
            continue  # the cluster's own releases (Karpenter on EKS) are part of what is ready
        missing = [u for u in ready_urns if not objects.owner_depends_on(release.urn, u)]
        assert missing == [], f"release {release.name} does not wait for {missing}"

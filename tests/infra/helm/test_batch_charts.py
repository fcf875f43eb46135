"""KubeRay and Kueue as real Helm renders them from the pinned archives with Gantry's values:
every values key read, Kueue managing RayJobs in team namespaces only, KubeRay watching the
team namespaces with no batch scheduler of its own, both scraped by Prometheus."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from infra.addons.batch import KUEUE_METRICS_READER
from infra.addons.monitoring import PROMETHEUS_SERVICE_ACCOUNT
from infra.checks.apply_set import ApplySet
from infra.checks.monitors import monitor_problems
from infra.checks.offline import values_problems
from infra.checks.schedulability import term_matches
from tests.conftest import STACKS, needs_charts, stack_config

Checked = Callable[[str], tuple[ApplySet, list[str]]]
RELEASES = ("kuberay-operator", "kueue")


@pytest.fixture(autouse=True)
def _charts() -> None:
    needs_charts()


def _objects(objects: ApplySet, release: str, kind: str) -> list[dict[str, Any]]:
    return [e.manifest for e in objects if e.owner_name == release and e.manifest["kind"] == kind]


@pytest.mark.parametrize("stack", STACKS)
def test_every_values_key_is_read(apply_set: Checked, stack: str) -> None:
    objects, _ = apply_set(stack)
    ours = {u: r for u, r in objects.releases.items() if r.inputs.name in RELEASES}
    assert len(ours) == 2
    assert values_problems(ours) == []


def _kueue_config(objects: ApplySet) -> dict[str, Any]:
    (cm,) = [
        m
        for m in _objects(objects, "kueue", "ConfigMap")
        if m["metadata"]["name"] == "kueue-manager-config"
    ]
    config: dict[str, Any] = yaml.safe_load(cm["data"]["controller_manager_config.yaml"])
    return config


def test_kueue_manages_rayjobs_in_team_namespaces_only(apply_set: Checked) -> None:
    objects, _ = apply_set("sandbox")
    config = _kueue_config(objects)
    assert config["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"
    assert config["integrations"]["frameworks"] == ["ray.io/rayjob"]
    assert config["manageJobsWithoutQueueName"] is False
    selector = config["managedJobsNamespaceSelector"]
    namespaces = {
        e.key[3]: {"kubernetes.io/metadata.name": e.key[3], **e.manifest["metadata"]["labels"]}
        for e in objects
        if e.key[1] == "Namespace"
    }
    teams = {t.name for t in stack_config("sandbox").platform.teams.teams}
    selected = {ns for ns, labels in namespaces.items() if term_matches(selector, labels)}
    assert selected == teams
    # Kueue refuses a selector that takes in kube-system or its own namespace.
    assert not term_matches(selector, {"kubernetes.io/metadata.name": "kube-system"})
    # Every namespaced webhook of Kueue asks only about those namespaces.
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        (config_obj,) = _objects(objects, "kueue", kind)
        for hook in config_obj["webhooks"]:
            if "namespaceSelector" in hook:
                assert hook["namespaceSelector"] == selector, hook["name"]


def test_kuberay_watches_the_team_namespaces_and_schedules_nothing(apply_set: Checked) -> None:
    objects, _ = apply_set("sandbox")
    (deployment,) = _objects(objects, "kuberay-operator", "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    teams = sorted(t.name for t in stack_config("sandbox").platform.teams.teams)
    assert args[args.index("--watch-namespace") + 1] == ",".join(teams)
    assert not [a for a in args if "batch-scheduler" in a]
    # A namespaced install: Roles in the watched namespaces, no ClusterRole.
    assert {m["metadata"]["namespace"] for m in _objects(objects, "kuberay-operator", "Role")} >= (
        set(teams)
    )
    assert not _objects(objects, "kuberay-operator", "ClusterRole")


def test_both_controllers_are_scraped(apply_set: Checked) -> None:
    objects, _ = apply_set("sandbox")
    for release in RELEASES:
        assert _objects(objects, release, "ServiceMonitor"), release
    assert not [p for p in monitor_problems(objects) if "kueue" in p or "kuberay" in p]
    # Kueue serves /metrics to authorised callers only: Prometheus' account may read them.
    assert _objects(objects, "kueue", "ClusterRole")
    assert any(
        m["metadata"]["name"] == KUEUE_METRICS_READER
        for m in _objects(objects, "kueue", "ClusterRole")
    )
    (prometheus,) = [e.manifest for e in objects if e.manifest["kind"] == "Prometheus"]
    assert prometheus["spec"]["serviceAccountName"] == PROMETHEUS_SERVICE_ACCOUNT


def test_controllers_run_as_restricted_pods(apply_set: Checked) -> None:
    objects, _ = apply_set("sandbox")
    for release in RELEASES:
        for d in _objects(objects, release, "Deployment"):
            pod = d["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for c in pod["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}

"""Tenancy and mesh policies, read as policies: each test is one rule the platform promises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infra.render import ResourceIndex
from tests.conftest import STACKS, stack_config

Program = Callable[[str], ResourceIndex]
TEAMS = [t.name for t in stack_config("sandbox").platform.teams.teams]


def objects(index: ResourceIndex, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
    return [
        m
        for m in index.find_manifests(kind)
        if namespace is None or m["metadata"].get("namespace") == namespace
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_every_namespace_declares_its_pod_security_level(program: Program, stack: str) -> None:
    namespaces = objects(program(stack), "Namespace")
    assert namespaces
    for ns in namespaces:
        labels = ns["metadata"].get("labels", {})
        assert labels.get("pod-security.kubernetes.io/enforce") in {
            "privileged",
            "baseline",
            "restricted",
        }, ns["metadata"]["name"]
        assert labels.get("pod-security.kubernetes.io/warn") == "restricted"


@pytest.mark.parametrize("team", TEAMS)
def test_team_namespace_is_restricted_and_meshed(program: Program, team: str) -> None:
    (ns,) = [m for m in objects(program("sandbox"), "Namespace") if m["metadata"]["name"] == team]
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["istio-injection"] == "enabled"


@pytest.mark.parametrize("team", TEAMS)
def test_every_team_has_a_gpu_quota(program: Program, team: str) -> None:
    quotas = objects(program("sandbox"), "ResourceQuota", team)
    assert len(quotas) == 1
    hard = quotas[0]["spec"]["hard"]
    assert {"requests.cpu", "requests.memory", "pods", "requests.nvidia.com/gpu"} <= hard.keys()


def test_quota_values_come_from_teams_yaml(program: Program) -> None:
    team = stack_config("sandbox").platform.teams.teams[0]
    (quota,) = objects(program("sandbox"), "ResourceQuota", team.name)
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == str(team.quota.gpus)
    assert quota["spec"]["hard"]["requests.memory"] == f"{team.quota.memory_gib:g}Gi"


@pytest.mark.parametrize("team", TEAMS)
def test_every_team_namespace_denies_by_default(program: Program, team: str) -> None:
    policies = objects(program("sandbox"), "NetworkPolicy", team)
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, f"{team}: no default-deny NetworkPolicy"
    # The explicit allows: own namespace, the gateway, Prometheus, DNS.
    sources = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in policies
        for rule in p["spec"].get("ingress", [])
        for peer in rule["from"]
        if "namespaceSelector" in peer
    }
    assert {"istio-ingress", "monitoring"} <= sources
    assert any(
        rule["from"] == [{"podSelector": {}}]
        for p in policies
        for rule in p["spec"].get("ingress", [])
    ), "pods of the same namespace may not talk to each other"


@pytest.mark.parametrize("team", TEAMS)
def test_team_authorization_policy_admits_only_team_and_platform(
    program: Program, team: str
) -> None:
    (policy,) = objects(program("sandbox"), "AuthorizationPolicy", team)
    assert policy["spec"]["action"] == "ALLOW"
    (rule,) = policy["spec"]["rules"]
    allowed = set(rule["from"][0]["source"]["namespaces"])
    assert allowed == {team, "istio-ingress", "monitoring", "flagger-system"}


@pytest.mark.parametrize("stack", STACKS)
def test_mesh_wide_mtls_is_strict(program: Program, stack: str) -> None:
    policies = objects(program(stack), "PeerAuthentication")
    mesh = [
        p
        for p in policies
        if p["metadata"]["namespace"] == "istio-system" and not p["spec"].get("selector")
    ]
    assert len(mesh) == 1 and mesh[0]["spec"]["mtls"]["mode"] == "STRICT"
    # Any other PeerAuthentication is workload-scoped, STRICT, and relaxes named ports only.
    for p in policies:
        assert p["spec"]["mtls"]["mode"] == "STRICT", p["metadata"]["name"]
        if p is not mesh[0]:
            assert p["spec"]["selector"]["matchLabels"], p["metadata"]["name"]


@pytest.mark.parametrize("stack", STACKS)
def test_no_team_gets_cluster_wide_rights(program: Program, stack: str) -> None:
    index = program(stack)
    groups = {t.group for t in stack_config(stack).platform.teams.teams}
    for binding in index.find_manifests("ClusterRoleBinding"):
        subjects = {s["name"] for s in binding.get("subjects", [])}
        assert not subjects & groups, binding["metadata"]["name"]
    bindings = [
        b
        for b in index.find_manifests("RoleBinding")
        if {s["name"] for s in b.get("subjects", [])} & groups
    ]
    assert len(bindings) == len(groups)
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role"  # not a ClusterRole such as admin/edit
        (role,) = [
            r
            for r in index.find_manifests("Role")
            if r["metadata"]["name"] == b["roleRef"]["name"]
            and r["metadata"]["namespace"] == b["metadata"]["namespace"]
        ]
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            assert "secrets" not in rule["resources"]
            assert not {"roles", "rolebindings"} & set(rule["resources"])


def test_priority_classes_for_serving_batch_preemptible(program: Program) -> None:
    classes = {m["metadata"]["name"]: m for m in program("sandbox").find_manifests("PriorityClass")}
    assert set(classes) == {"gantry-serving", "gantry-batch", "gantry-preemptible"}
    assert classes["gantry-serving"]["value"] > classes["gantry-batch"]["value"]
    assert classes["gantry-batch"]["value"] > classes["gantry-preemptible"]["value"]
    assert classes["gantry-preemptible"]["preemptionPolicy"] == "Never"
    assert not any(c.get("globalDefault") for c in classes.values())

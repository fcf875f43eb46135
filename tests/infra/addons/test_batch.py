"""The batch add-ons (infra/addons/batch.py): KubeRay and Kueue in their own namespaces, a
flavor per pool, a queue per team from platform/teams.yaml, in the order Kueue needs them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gantry.pools import GPU_RESOURCE, pool_facts
from gantry.teams import PRIORITY_CLASSES, RESERVED_NAMESPACES
from infra.addons.batch import (
    COHORT,
    JOB_STORAGE_PVC,
    KUBERAY_NAMESPACE,
    KUEUE_API,
    KUEUE_NAMESPACE,
    LOCAL_QUEUE,
    RAY_DASHBOARD_PORT,
    RAY_HEAD_LABELS,
    cluster_queue,
)
from infra.addons.tenancy import TEAM_RULES
from infra.cluster.kind import JOB_STORAGE_CLASS, JOB_STORAGE_NODE_PATH
from infra.jobs import render_jobs
from infra.render import Resource, ResourceIndex
from tests.conftest import STACKS, stack_config

Program = Callable[[str], ResourceIndex]
TEAMS = stack_config("sandbox").platform.teams.teams


def kueue(index: ResourceIndex, kind: str) -> dict[str, Resource]:
    return {
        r.manifest()["metadata"]["name"] + "/" + r.manifest()["metadata"].get("namespace", ""): r
        for r in index.k8s_objects("platform")
        if r.manifest()["kind"] == kind
    }


def manifests(index: ResourceIndex, kind: str) -> dict[str, dict[str, Any]]:
    return {key.rstrip("/"): r.manifest() for key, r in kueue(index, kind).items()}


def depends(index: ResourceIndex, r: Resource, name: str) -> bool:
    return any(index._by_urn[u].name == name for u in r.depends_on if u in index._by_urn)


@pytest.mark.parametrize("stack", STACKS)
def test_a_flavor_per_pool_from_the_pool_model(program: Program, stack: str) -> None:
    cfg = stack_config(stack)
    flavors = manifests(program(stack), "ResourceFlavor")
    assert set(flavors) == {p.name for p in cfg.pools}
    for name, pool in pool_facts(cfg.pools).items():
        spec = flavors[name]["spec"]
        assert flavors[name]["apiVersion"] == KUEUE_API
        assert spec["nodeLabels"] == pool.node_selector
        # GPU pools: the taint and its toleration come from gantry.pools, nowhere else.
        assert spec.get("nodeTaints", []) == pool.taints_k8s()
        assert spec.get("tolerations", []) == pool.tolerations
    assert flavors["gpu"]["spec"]["nodeTaints"][0]["key"] == GPU_RESOURCE


def test_a_cluster_queue_per_team_from_teams_yaml(program: Program) -> None:
    queues = manifests(program("sandbox"), "ClusterQueue")
    assert set(queues) == {t.name for t in TEAMS if t.jobs.quota}
    serving = next(t for t in TEAMS if t.name == "ml-serving")
    spec = queues["ml-serving"]["spec"]
    assert spec["cohortName"] == COHORT
    assert spec["queueingStrategy"] == "BestEffortFIFO"
    assert spec["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "ml-serving"}
    }
    assert spec["preemption"] == {
        "reclaimWithinCohort": "Any",
        "withinClusterQueue": "LowerPriority",
        "borrowWithinCohort": {"policy": "Never"},
    }
    (group,) = spec["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", GPU_RESOURCE]
    assert [f["name"] for f in group["flavors"]] == list(serving.jobs.quota)
    gpu = {r["name"]: r for r in group["flavors"][1]["resources"]}
    q = serving.jobs.quota["gpu"]
    assert gpu["cpu"]["nominalQuota"] == f"{q.cpu:g}"
    assert gpu["memory"]["nominalQuota"] == f"{q.memory_gib:g}Gi"
    assert gpu[GPU_RESOURCE]["nominalQuota"] == str(q.gpus)
    # borrowing: true in teams.yaml -> no borrowingLimit.
    assert all("borrowingLimit" not in r for r in gpu.values())


def test_no_borrowing_means_a_borrowing_limit_of_zero() -> None:
    team = TEAMS[0].model_copy(
        update={"jobs": TEAMS[0].jobs.model_copy(update={"borrowing": False})}
    )
    flavors = cluster_queue(team)["spec"]["resourceGroups"][0]["flavors"]
    assert all(r["borrowingLimit"] == 0 for f in flavors for r in f["resources"])


def test_local_queues_and_priority_classes(program: Program) -> None:
    index = program("sandbox")
    local = manifests(index, "LocalQueue")
    assert local == {
        f"{LOCAL_QUEUE}/{t.name}": {
            "apiVersion": KUEUE_API,
            "kind": "LocalQueue",
            "metadata": {"name": LOCAL_QUEUE, "namespace": t.name},
            "spec": {"clusterQueue": t.name},
        }
        for t in TEAMS
        if t.jobs.quota
    }
    wpcs = manifests(index, "WorkloadPriorityClass")
    assert {n: m["value"] for n, m in wpcs.items()} == {
        n: v for n, (v, _, _) in PRIORITY_CLASSES.items()
    }


def test_apply_order_is_recorded(program: Program) -> None:
    """kueue release -> flavors, priority classes -> ClusterQueues -> LocalQueues; the team's
    namespace before its LocalQueue and its job volume."""
    index = program("sandbox")
    for r in [
        *kueue(index, "ResourceFlavor").values(),
        *kueue(index, "WorkloadPriorityClass").values(),
    ]:
        assert depends(index, r, "kueue"), r.name
    for team in (t for t in TEAMS if t.jobs.quota):
        cq = index.named(f"{team.name}-cluster-queue")
        assert depends(index, cq, "kueue")
        assert all(depends(index, cq, f"flavor-{pool}") for pool in team.jobs.quota)
        lq = index.named(f"{team.name}-local-queue")
        assert depends(index, lq, f"{team.name}-cluster-queue")
        assert depends(index, lq, f"ns-{team.name}")
        assert depends(index, index.named(f"{team.name}-job-storage"), f"ns-{team.name}")


@pytest.mark.parametrize("stack", STACKS)
def test_releases_in_their_own_namespaces(program: Program, stack: str) -> None:
    index = program(stack)
    rel = {r.inputs["name"]: r for r in index.helm_releases()}
    assert rel["kuberay-operator"].inputs["namespace"] == KUBERAY_NAMESPACE
    assert rel["kueue"].inputs["namespace"] == KUEUE_NAMESPACE
    namespaces = manifests(index, "Namespace")
    for ns in (KUBERAY_NAMESPACE, KUEUE_NAMESPACE):
        assert ns in RESERVED_NAMESPACES  # no team may take it
        assert namespaces[ns]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
            "restricted"
        )
        assert "istio-injection" not in namespaces[ns]["metadata"]["labels"]
    # KubeRay watches exactly the team namespaces, after they exist (its Roles live there).
    values = rel["kuberay-operator"].inputs["values"]
    assert values["watchNamespace"] == sorted(t.name for t in TEAMS)
    assert all(depends(index, rel["kuberay-operator"], f"ns-{t.name}") for t in TEAMS)
    # Kueue queues the jobs: KubeRay's own batch scheduler stays off.
    assert values["batchScheduler"] == {"enabled": False, "name": ""}


JOB_TEAMS = [t.name for t in TEAMS if t.jobs.quota]
# Pod Security `restricted`: the volume types a pod may use (no hostPath).
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def test_kind_job_volumes_are_static_on_the_folder_every_node_shares(program: Program) -> None:
    """kind's local-path class is ReadWriteOnce: each team's claim binds a static ReadWriteMany
    volume on the host folder every kind worker mounts, reserved for that claim alone."""
    index = program("sandbox")
    (cls,) = index.find_manifests("StorageClass")
    assert cls["metadata"]["name"] == JOB_STORAGE_CLASS
    assert cls["provisioner"] == "kubernetes.io/no-provisioner"
    assert cls["volumeBindingMode"] == "Immediate"
    pvcs = manifests(index, "PersistentVolumeClaim")
    volumes = {
        m["spec"]["claimRef"]["namespace"]: m for m in index.find_manifests("PersistentVolume")
    }
    assert sorted(volumes) == sorted(JOB_TEAMS)  # one per team with jobs
    for team in JOB_TEAMS:
        claim = pvcs[f"{JOB_STORAGE_PVC}/{team}"]["spec"]
        assert claim["accessModes"] == ["ReadWriteMany"]  # head and workers on different nodes
        assert claim["storageClassName"] == JOB_STORAGE_CLASS
        volume = volumes[team]["spec"]
        assert volume["claimRef"] == {"namespace": team, "name": JOB_STORAGE_PVC}
        assert volume["accessModes"] == ["ReadWriteMany"]
        assert volume["storageClassName"] == JOB_STORAGE_CLASS
        assert volume["capacity"] == claim["resources"]["requests"]
        assert volume["persistentVolumeReclaimPolicy"] == "Retain"  # checkpoints outlive a claim
        # The folder every worker binds (infra/cluster/kind.py); Directory: never created by
        # the kubelet as root's.
        assert volume["hostPath"] == {"path": JOB_STORAGE_NODE_PATH, "type": "Directory"}
        # Applied in order: class, volume, claim (which binds at once).
        pv = index.named(f"{team}-job-volume")
        assert depends(index, pv, "job-storage-class")
        assert depends(index, index.named(f"{team}-job-storage"), f"{team}-job-volume")


def test_eks_job_claims_use_the_stacks_class_and_no_static_volume(program: Program) -> None:
    index = program("eks")
    storage_class = stack_config("eks").platform.job_storage_class
    assert storage_class  # an EFS class the user installs (Pulumi.eks.yaml)
    pvcs = manifests(index, "PersistentVolumeClaim")
    for team in JOB_TEAMS:
        claim = pvcs[f"{JOB_STORAGE_PVC}/{team}"]["spec"]
        assert claim["accessModes"] == ["ReadWriteMany"]
        assert claim["storageClassName"] == storage_class
    assert not index.find_manifests("PersistentVolume")  # the class provisions them
    assert [m["metadata"]["name"] for m in index.find_manifests("StorageClass")] == ["gp3"]


@pytest.mark.parametrize("stack", STACKS)
def test_job_pods_mount_the_claim_not_a_host_path(stack: str) -> None:
    """Pod Security `restricted` in the team namespaces: the host folder reaches a job's pods
    through its claim only."""
    for job in render_jobs(stack_config(stack)):
        cluster = job.manifest["spec"]["rayClusterSpec"]
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        for group in groups:
            volumes = group["template"]["spec"]["volumes"]
            assert {k for v in volumes for k in v if k != "name"} <= RESTRICTED_VOLUMES
            assert {
                "name": "job-storage",
                "persistentVolumeClaim": {"claimName": JOB_STORAGE_PVC},
            } in volumes


def test_teams_may_submit_rayjobs_and_read_what_becomes_of_them() -> None:
    def verbs(group: str, resource: str) -> set[str]:
        return {
            v
            for rule in TEAM_RULES
            if group in rule["apiGroups"] and resource in rule["resources"]
            for v in rule["verbs"]
        }

    assert {"create", "delete", "get", "list", "watch"} == verbs("ray.io", "rayjobs")
    assert verbs("ray.io", "rayclusters") == {"get", "list", "watch"}
    assert verbs("kueue.x-k8s.io", "workloads") == {"get", "list", "watch"}
    assert verbs("kueue.x-k8s.io", "localqueues") == {"get", "list", "watch"}
    assert not verbs("kueue.x-k8s.io", "clusterqueues")  # quotas are the platform's


def test_kuberay_reaches_only_the_ray_heads_dashboard(program: Program) -> None:
    for team in TEAMS:
        (policy,) = [
            m
            for m in program("sandbox").find_manifests("NetworkPolicy")
            if m["metadata"] == {"name": "allow-kuberay-to-ray-head", "namespace": team.name}
        ]
        spec = policy["spec"]
        assert spec["podSelector"] == {"matchLabels": RAY_HEAD_LABELS}
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": RAY_DASHBOARD_PORT}]
        (peer,) = rule["from"]
        assert peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": KUBERAY_NAMESPACE
        }

"""Karpenter on the EKS stack: its AWS side (exactly the template Karpenter publishes), its two Helm
releases, a NodePool + EC2NodeClass per pool from the pool model, and the apply order."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from gantry.pools import GPU_RESOURCE, GPU_TAINT, POOL_KIND_LABEL, POOL_LABEL, Pool
from gantry.stack import GantryConfig
from infra.checks import crd_schema_dir, validate_custom_resource
from infra.checks.apply_set import ApplySet, Entry
from infra.cluster.eks import NODE_POLICIES, SYSTEM_NODES
from infra.cluster.karpenter_aws import (
    CONTROLLER_POLICIES,
    EVENT_RULES,
    controller_policy,
    event_pattern,
    resources,
    template_names,
)
from infra.cluster.karpenter_pools import AMI_ALIAS, DISCOVERY_TAG, node_class, node_pool
from infra.render import HELM_RELEASE, Resource, ResourceIndex, run_offline
from tests.infra.cluster.test_eks import HOOKS, eks_config, with_pools

CLUSTER = "gantry-eks"
ROLE_ARN = "arn:aws:iam::000000000000:role/{}"
POLICY_ARN = "arn:aws:iam::000000000000:policy/{}"
QUEUE_ARN = f"arn:aws:sqs:us-west-2:000000000000:{CLUSTER}"
NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
NODECLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
Checked = Callable[[str], tuple[ApplySet, list[str]]]


@pytest.fixture(scope="module")
def wired() -> ResourceIndex:
    """The EKS stack (both pools Karpenter's) with ARNs as AWS would return them."""
    policy_arn = {"aws:iam/policy:Policy": lambda a: {"arn": POLICY_ARN.format(a.name)}}
    return run_offline(eks_config(), "eks-karpenter", hooks={**HOOKS, **policy_arn})


def release(index: ResourceIndex, name: str) -> Resource:
    return index.named(name, HELM_RELEASE)


def spec(index: ResourceIndex, type_: str, pool: str) -> dict[str, Any]:
    (found,) = [r for r in index.of_type(type_) if r.inputs["metadata"]["name"] == pool]
    assert found.layer == "cluster"
    spec_: dict[str, Any] = found.inputs["spec"]
    return spec_


# --- The Helm releases ---------------------------------------------------------------------------


def test_the_crds_and_the_controller_are_two_releases_of_the_pinned_charts(
    wired: ResourceIndex,
) -> None:
    crds, controller = release(wired, "karpenter-crd"), release(wired, "karpenter")
    for r in (crds, controller):
        assert r.inputs["version"] == "1.14.1"
        assert r.inputs["namespace"] == "kube-system"
        assert r.layer == "cluster"
    assert crds.inputs["chart"] == "oci://public.ecr.aws/karpenter/karpenter-crd"
    assert controller.inputs["skipCrds"] is True  # karpenter-crd owns them (no CRD twice)
    # The controller starts after its IAM role reaches its pods and a system node exists.
    deps = controller.depends_on
    assert any(d.endswith(f"eks:index:ManagedNodeGroup::{CLUSTER}-system") for d in deps)
    assert any(d.endswith(f"PodIdentityAssociation::{CLUSTER}-karpenter-controller") for d in deps)
    assert any(d.endswith("Release::karpenter-crd") for d in deps)
    values = controller.inputs["values"]
    assert values["settings"] == {"clusterName": CLUSTER, "interruptionQueue": CLUSTER}
    assert values["serviceAccount"] == {"name": "karpenter"}
    # Pinned on the system node group, which it tolerates; never on a node it manages.
    assert values["nodeSelector"] == {POOL_LABEL: "system"}
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in values["tolerations"]
    assert values["replicas"] == 2
    assert values["controller"]["resources"]["limits"] == {"cpu": 1, "memory": "1Gi"}


def test_the_system_node_group_is_fixed_and_tainted_for_system_pods(wired: ResourceIndex) -> None:
    group = wired.named(f"{CLUSTER}-system", "eks:index:ManagedNodeGroup").inputs
    assert group["scalingConfig"] == {"minSize": 2, "maxSize": 2, "desiredSize": 2}
    assert group["taints"] == [
        {"key": "CriticalAddonsOnly", "value": "true", "effect": "NO_SCHEDULE"}
    ]
    assert group["instanceTypes"] == [SYSTEM_NODES.instance_type]
    # The stack's pools are Karpenter's: no node group of their own.
    groups = {r.name for r in wired.of_type("eks:index:ManagedNodeGroup")}
    assert groups == {f"{CLUSTER}-system"}


# --- AWS: IAM through Pod Identity, the node role, the interruption queue ------------------------


def test_the_controller_role_reaches_its_pod_through_pod_identity(wired: ResourceIndex) -> None:
    role = wired.named(f"{CLUSTER}-karpenter-controller", "aws:iam/role:Role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    association = wired.named(
        f"{CLUSTER}-karpenter-controller", "aws:eks/podIdentityAssociation:PodIdentityAssociation"
    )
    assert association.inputs == {
        "clusterName": CLUSTER,
        "namespace": "kube-system",
        "serviceAccount": "karpenter",
        "roleArn": ROLE_ARN.format(f"{CLUSTER}-karpenter-controller"),
    }


def test_the_controller_policies_are_karpenters_own(wired: ResourceIndex) -> None:
    names = template_names(
        CLUSTER,
        "us-west-2",
        "000000000000",
        ROLE_ARN.format(f"{CLUSTER}-karpenter-node"),
        QUEUE_ARN,
    )
    policies = {
        r.name: json.loads(r.inputs["policy"]) for r in wired.of_type("aws:iam/policy:Policy")
    }
    assert len(policies) == len(CONTROLLER_POLICIES) == 6
    assert sorted(policies.values(), key=json.dumps) == sorted(
        (controller_policy(p, names) for p in CONTROLLER_POLICIES), key=json.dumps
    )
    text = json.dumps(list(policies.values()))
    assert "${" not in text  # every template variable substituted
    lifecycle = policies[f"{CLUSTER}-karpenter-node-lifecycle"]["Statement"]
    run = next(s for s in lifecycle if s["Sid"] == "AllowScopedEC2InstanceActionsWithTags")
    assert run["Condition"]["StringEquals"]["aws:RequestTag/eks:eks-cluster-name"] == CLUSTER
    integration = policies[f"{CLUSTER}-karpenter-iam-integration"]["Statement"]
    pass_role = next(s for s in integration if s["Sid"] == "AllowPassingInstanceRole")
    assert pass_role["Resource"] == ROLE_ARN.format(f"{CLUSTER}-karpenter-node")
    attached = {
        r.inputs["policyArn"]
        for r in wired.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.inputs["role"] == f"{CLUSTER}-karpenter-controller"
    }
    assert attached == {POLICY_ARN.format(name) for name in policies}


def test_nodes_join_with_their_own_role_and_an_ec2_linux_access_entry(
    wired: ResourceIndex,
) -> None:
    node_role = f"{CLUSTER}-karpenter-node"
    entry = wired.named(node_role, "aws:eks/accessEntry:AccessEntry").inputs
    assert entry == {
        "clusterName": CLUSTER,
        "principalArn": ROLE_ARN.format(node_role),
        "type": "EC2_LINUX",
    }
    attached = {
        r.inputs["policyArn"]
        for r in wired.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.inputs["role"] == node_role
    }
    assert attached == set(NODE_POLICIES)


def test_the_interruption_queue_gets_the_templates_events(wired: ResourceIndex) -> None:
    queue = wired.named(f"{CLUSTER}-karpenter", "aws:sqs/queue:Queue").inputs
    assert queue["name"] == CLUSTER
    assert queue["messageRetentionSeconds"] == 300  # seconds
    assert queue["sqsManagedSseEnabled"] is True
    policy = json.loads(
        wired.named(f"{CLUSTER}-karpenter", "aws:sqs/queuePolicy:QueuePolicy").inputs["policy"]
    )
    send, deny_http = policy["Statement"]
    assert send["Principal"]["Service"] == ["events.amazonaws.com", "sqs.amazonaws.com"]
    assert send["Action"] == "sqs:SendMessage" and send["Resource"] == QUEUE_ARN
    assert deny_http["Effect"] == "Deny"
    rules = wired.of_type("aws:cloudwatch/eventRule:EventRule")
    patterns = [json.loads(r.inputs["eventPattern"]) for r in rules]
    assert sorted(patterns, key=json.dumps) == sorted(
        map(event_pattern, EVENT_RULES), key=json.dumps
    )
    detail_types = {t for p in patterns for t in p["detail-type"]}
    assert {
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification",
        "AWS Health Event",
    } <= detail_types
    targets = wired.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert len(targets) == len(rules) == len(EVENT_RULES)
    assert {t.inputs["arn"] for t in targets} == {QUEUE_ARN}


def test_subnets_and_the_cluster_security_group_carry_the_discovery_tag(
    wired: ResourceIndex,
) -> None:
    tags = wired.of_type("aws:ec2/tag:Tag")
    assert {(t.inputs["key"], t.inputs["value"]) for t in tags} == {(DISCOVERY_TAG, CLUSTER)}
    subnets = {t.inputs.get("resourceId") for t in tags} - {None}
    assert subnets == set(eks_config().cluster.eks.subnet_ids)  # type: ignore[union-attr]
    assert any(t.name == f"{CLUSTER}-karpenter-cluster-sg" for t in tags)


def test_every_template_resource_gantry_uses_is_in_the_template() -> None:
    kinds = {name: r["Type"] for name, r in resources().items()}
    assert all(kinds[p] == "AWS::IAM::ManagedPolicy" for p in CONTROLLER_POLICIES)
    assert all(kinds[r] == "AWS::Events::Rule" for r in EVENT_RULES)
    # Every rule and policy of the template is created: none left out.
    assert {n for n, k in kinds.items() if k == "AWS::Events::Rule"} == set(EVENT_RULES)
    assert {n for n, k in kinds.items() if k == "AWS::IAM::ManagedPolicy"} == set(
        CONTROLLER_POLICIES
    )


# --- A NodePool and an EC2NodeClass per pool -----------------------------------------------------


def test_gpu_pool_nodepool_from_the_pool_model(wired: ResourceIndex) -> None:
    gpu = spec(wired, NODEPOOL, "gpu")
    template = gpu["template"]
    assert template["metadata"]["labels"] == {POOL_LABEL: "gpu", POOL_KIND_LABEL: "gpu"}
    assert template["spec"]["taints"] == [
        {"key": GPU_TAINT.key, "value": GPU_TAINT.value, "effect": "NoSchedule"}
    ]
    requirements = {r["key"]: r["values"] for r in template["spec"]["requirements"]}
    assert requirements == {
        "karpenter.k8s.aws/instance-family": ["g5"],
        "karpenter.k8s.aws/instance-size": ["xlarge"],
        "karpenter.sh/capacity-type": ["on-demand"],
        "kubernetes.io/arch": ["amd64"],
        "kubernetes.io/os": ["linux"],
    }
    assert template["spec"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "gpu",
    }
    # max_size 5 nodes of 1 GPU each.
    assert gpu["limits"] == {"nodes": "5", GPU_RESOURCE: "5"}
    assert gpu["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert gpu["disruption"]["consolidateAfter"] == "10m"
    assert gpu["disruption"]["budgets"] == [{"nodes": "1"}]


def test_cpu_pool_consolidates_when_underutilized(wired: ResourceIndex) -> None:
    cpu = spec(wired, NODEPOOL, "cpu")
    assert cpu["template"]["spec"]["taints"] == []
    assert cpu["limits"] == {"nodes": "6"}
    assert cpu["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"


def test_node_classes_use_al2023_the_node_role_and_the_discovery_tag(wired: ResourceIndex) -> None:
    for pool, disk in (("cpu", "50Gi"), ("gpu", "100Gi")):
        nc = spec(wired, NODECLASS, pool)
        # One alias for both: Karpenter picks the NVIDIA variant for GPU instance types.
        assert nc["amiSelectorTerms"] == [{"alias": AMI_ALIAS}] == [{"alias": "al2023@latest"}]
        assert nc["role"] == f"{CLUSTER}-karpenter-node"
        assert nc["subnetSelectorTerms"] == [{"tags": {DISCOVERY_TAG: CLUSTER}}]
        assert nc["securityGroupSelectorTerms"] == nc["subnetSelectorTerms"]
        assert nc["blockDeviceMappings"][0]["ebs"]["volumeSize"] == disk


def test_spot_capacity_type_reaches_the_nodepool() -> None:
    pool = Pool(
        name="batch",
        kind="cpu",
        instance_type="c7i.2xlarge",
        cpu=7.5,
        memory_gib=14,
        min_size=0,
        max_size=3,
        capacity_type="spot",
    )
    requirements = node_pool(pool)["template"]["spec"]["requirements"]
    assert {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]} in (
        requirements
    )
    assert {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["c7i"]} in (
        requirements
    )


def test_a_managed_pool_stays_a_node_group_beside_karpenters() -> None:
    cfg = eks_config()
    raw = cfg.model_dump()
    raw["pools"][1]["autoscaling"] = "managed"  # gpu
    index = run_offline(GantryConfig.model_validate(raw), "eks-mixed")
    groups = {r.name for r in index.of_type("eks:index:ManagedNodeGroup")}
    assert groups == {f"{CLUSTER}-gpu", f"{CLUSTER}-system"}
    assert [r.inputs["metadata"]["name"] for r in index.of_type(NODEPOOL)] == ["cpu"]


def test_without_karpenter_pools_there_is_no_karpenter() -> None:
    index = run_offline(with_pools(eks_config(), autoscaling="managed"), "eks-fixed")
    assert not index.of_type(NODEPOOL)
    assert not index.of_type("gantry:cluster:Karpenter")
    assert not index.of_type("aws:sqs/queue:Queue")
    groups = {r.name for r in index.of_type("eks:index:ManagedNodeGroup")}
    assert groups == {f"{CLUSTER}-cpu", f"{CLUSTER}-gpu"}  # no system group either


# --- Offline checks: the CRD schemas, the apply order --------------------------------------------


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_nodepool_and_nodeclass_pass_the_crd_schemas(kind: str) -> None:
    schemas = crd_schema_dir()
    if schemas is None or not (schemas / "karpenter.sh").is_dir():
        pytest.skip("no karpenter CRD schemas here (GANTRY_CRD_SCHEMAS)")
    pool = next(p for p in eks_config().pools if p.kind == kind)
    objects = [
        {
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": pool.name},
            "spec": node_pool(pool),
        },
        {
            "apiVersion": "karpenter.k8s.aws/v1",
            "kind": "EC2NodeClass",
            "metadata": {"name": pool.name},
            "spec": node_class(pool, CLUSTER, "node-role"),
        },
    ]
    for obj in objects:
        assert validate_custom_resource(obj, schemas) == []


def test_the_eks_apply_set_renders_karpenter_and_applies_it_in_order(apply_set: Checked) -> None:
    """Real Helm renders both charts with Gantry's values; the whole set passes every check
    (values read, nothing twice, CRD schemas, order); CRDs -> controller -> NodePools -> pods."""
    objects, problems = apply_set("eks")
    assert problems == []

    def one(kind: str, name: str) -> Entry:
        (found,) = [e for e in objects if e.key[1] == kind and e.key[3] == name]
        return found

    deployment = one("Deployment", "karpenter")
    pod = deployment.manifest["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["CLUSTER_NAME"] == env["INTERRUPTION_QUEUE"] == CLUSTER
    assert pod["serviceAccountName"] == "karpenter"
    assert pod["nodeSelector"][POOL_LABEL] == "system"
    # The CRDs once, from the karpenter-crd release (the controller's crds/ are skipped).
    crd = one("CustomResourceDefinition", "nodepools.karpenter.sh")
    assert crd.owner_name == "karpenter-crd" and crd.stage == "template"
    nodepool, nodeclass = one("NodePool", "gpu"), one("EC2NodeClass", "gpu")
    for cr in (nodepool, nodeclass):
        assert objects.owner_depends_on(cr.owner, crd.owner)
    assert objects.owner_depends_on(nodepool.owner, deployment.owner)
    assert objects.owner_depends_on(nodepool.owner, nodeclass.owner)
    assert objects.owner_depends_on(deployment.owner, crd.owner)
    embedder = one("Deployment", "embedder")
    assert objects.owner_depends_on(embedder.owner, nodepool.owner)

"""The eks provider: the inputs Gantry hands pulumi_eks and AWS (pulumi_eks' components are remote,
so their own children do not exist under mocks; these are the values AWS would receive)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks
from pulumi.runtime.rpc import _special_resource_sig, _special_sig_key

from gantry.pools import GPU_RESOURCE, POOL_LABEL, Pool, scheduling
from gantry.service import load_services
from gantry.stack import SUPPORTED_K8S_VERSIONS, GantryConfig, load_stack_file
from infra.cluster.eks import (
    AMI_TYPES,
    EBS_CSI_POLICY,
    NODE_POLICIES,
    EksCluster,
    EksClusterArgs,
    node_template_tags,
)
from infra.render import OutputHook, Resource, ResourceIndex, run_offline

REPO = Path(__file__).resolve().parents[3]
Program = Callable[[str], ResourceIndex]
AUTOSCALER = "k8s.io/cluster-autoscaler"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"


@pytest.fixture
def eks(program: Program) -> ResourceIndex:
    return program("eks")


def node_group(index: ResourceIndex, pool: str) -> Resource:
    return index.named(f"gantry-eks-{pool}", "eks:index:ManagedNodeGroup")


# --- What a provider would compute, for the wiring tests below -----------------------------------


def _role_arn(args: mocks.MockResourceArgs) -> dict[str, Any]:
    return {"arn": f"arn:aws:iam::000000000000:role/{args.name}"}


def _pool_asg(args: mocks.MockResourceArgs) -> dict[str, Any]:
    # Read back through the node group reference below: the ASG EKS made for this pool.
    return {"resources": [{"autoscalingGroups": [{"name": f"eks-{args.name}-asg"}]}]}


def _node_group_ref(args: mocks.MockResourceArgs) -> dict[str, Any]:
    """pulumi_eks returns the aws.eks.NodeGroup as a resource reference. Under mocks a reference
    must name a registered resource: the node group's parent, the pool's component, whose mocked
    state (`_pool_asg`) then stands for the NodeGroup's."""
    parent = f"gantry:cluster:EksCluster$gantry:cluster:EksNodePool::{args.name}"
    urn = f"urn:pulumi:{pulumi.get_stack()}::gantry::{parent}"
    ref = {"urn": urn, "type": "aws:eks/nodeGroup:NodeGroup", "name": args.name, "id": args.name}
    return {"nodeGroup": {_special_sig_key: _special_resource_sig, **ref}}


HOOKS: dict[str, OutputHook] = {
    "aws:iam/role:Role": _role_arn,
    "gantry:cluster:EksNodePool": _pool_asg,
    "eks:index:ManagedNodeGroup": _node_group_ref,
}


def eks_config() -> GantryConfig:
    return load_stack_file(REPO / "Pulumi.eks.yaml")


@pytest.fixture(scope="module")
def wired() -> ResourceIndex:
    """The EKS stack with role ARNs and node group ASGs as AWS would return them."""
    return run_offline(eks_config(), "eks-wired", hooks=HOOKS)


# --- The cluster ---------------------------------------------------------------------------------


def test_cluster_skips_default_group_and_uses_configured_version(eks: ResourceIndex) -> None:
    cluster = eks.named("gantry-eks", "eks:index:Cluster")
    assert cluster.layer == "cluster"
    assert cluster.inputs["name"] == "gantry-eks"
    assert cluster.inputs["version"] == "1.35"
    assert cluster.inputs["skipDefaultNodeGroup"] is True
    assert cluster.inputs["createOidcProvider"] is True  # IRSA for later add-ons
    role = eks.named("gantry-eks-node", "aws:iam/role:Role")
    assert cluster.inputs["instanceRoles"] == [f"{role.name}-id"]  # the node role may join


def test_eks_stack_runs_a_version_in_eks_standard_support() -> None:
    # EKS release calendar on 2026-11-30: 1.34 (to 2026-12-02), 1.35 (to 2027-03-27) and 1.36
    # are in standard support; 1.33 has been billed as extended support since 2026-07-29.
    version = eks_config().cluster.kubernetes_version
    assert version in {"1.35", "1.36"}, "pin a version with months of standard support left"
    assert version in SUPPORTED_K8S_VERSIONS


def test_vpc_cni_enforces_network_policies(eks: ResourceIndex) -> None:
    # Off by default in the vpc-cni add-on: without it the teams' default-deny does nothing.
    cluster = eks.named("gantry-eks", "eks:index:Cluster")
    assert cluster.inputs["vpcCniOptions"]["enableNetworkPolicy"] is True
    assert cluster.inputs.get("useDefaultVpcCni") is not True  # pulumi_eks manages the add-on


def test_aws_provider_uses_the_configured_region(eks: ResourceIndex) -> None:
    assert eks.named("gantry-eks-aws", "pulumi:providers:aws").inputs["region"] == "us-west-2"


# --- Node pools ----------------------------------------------------------------------------------


def test_gpu_node_group_tainted_with_nvidia_ami(eks: ResourceIndex) -> None:
    gpu = node_group(eks, "gpu").inputs
    assert gpu["amiType"] == AMI_TYPES["gpu"] == "AL2023_x86_64_NVIDIA"
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert gpu["labels"][POOL_LABEL] == "gpu"
    assert gpu["instanceTypes"] == ["g5.xlarge"]


def test_cpu_node_group_untainted_standard_ami(eks: ResourceIndex) -> None:
    cpu = node_group(eks, "cpu").inputs
    assert cpu["amiType"] == "AL2023_x86_64_STANDARD"
    assert cpu["taints"] == []
    assert cpu["labels"] == {POOL_LABEL: "cpu", "gantry.dev/pool-kind": "cpu"}


def test_each_node_group_belongs_to_its_pool_component(eks: ResourceIndex) -> None:
    for pool in ("cpu", "gpu"):
        parent = eks.parent_of(node_group(eks, pool))
        assert parent is not None and parent.type == "gantry:cluster:EksNodePool"
        assert parent.name == f"gantry-eks-{pool}"


def test_scaling_follows_the_pools_and_desired_size_is_applied(eks: ResourceIndex) -> None:
    assert node_group(eks, "cpu").inputs["scalingConfig"] == {
        "minSize": 2,
        "maxSize": 6,
        "desiredSize": 2,
    }
    gpu = node_group(eks, "gpu").inputs
    assert gpu["scalingConfig"] == {"minSize": 0, "maxSize": 4, "desiredSize": 3}
    # No node autoscaler owns desiredSize: a later `up` must apply the stack's value (ignoring it
    # froze it, and a min_size raised above the frozen value made EKS reject the update).
    for pool in ("cpu", "gpu"):
        assert not node_group(eks, pool).inputs.get("ignoreScalingChanges")


def test_node_group_resource_keeps_only_pool_and_discovery_tags(eks: ResourceIndex) -> None:
    tags = node_group(eks, "gpu").inputs["tags"]
    assert tags == {
        POOL_LABEL: "gpu",
        f"{AUTOSCALER}/enabled": "true",
        f"{AUTOSCALER}/gantry-eks": "owned",
    }


def asg_tags(index: ResourceIndex, pool: str) -> dict[str, dict[str, Any]]:
    component = index.named(f"gantry-eks-{pool}", "gantry:cluster:EksNodePool")
    return {
        r.inputs["tag"]["key"]: r.inputs
        for r in index.children(component)
        if r.type == "aws:autoscaling/tag:Tag"
    }


def test_node_templates_are_tagged_on_the_pools_auto_scaling_group(wired: ResourceIndex) -> None:
    # Managed node group tags never reach the ASG, where a cluster autoscaler reads node
    # templates (to scale a pool up from zero): each is an ASG tag of its own.
    prefix = f"{AUTOSCALER}/node-template"
    gpu = asg_tags(wired, "gpu")
    assert {key: t["tag"]["value"] for key, t in gpu.items()} == {
        f"{prefix}/label/{POOL_LABEL}": "gpu",
        f"{prefix}/label/gantry.dev/pool-kind": "gpu",
        f"{prefix}/taint/nvidia.com/gpu": "present:NoSchedule",
        f"{prefix}/resources/{GPU_RESOURCE}": "1",
    }
    for pool in ("cpu", "gpu"):
        for t in asg_tags(wired, pool).values():
            assert t["autoscalingGroupName"] == f"eks-gantry-eks-{pool}-asg"  # its own pool's
            assert t["tag"]["propagateAtLaunch"] is False  # a hint for the autoscaler only


def test_node_template_tags_for_cpu_pool_have_no_gpu_resource() -> None:
    pool = Pool(name="cpu", kind="cpu", cpu=2, memory_gib=4, min_size=1, max_size=2)
    tags = node_template_tags(scheduling(pool))
    assert not any("resources/" in k or "/taint/" in k for k in tags)
    assert tags[f"{AUTOSCALER}/node-template/label/{POOL_LABEL}"] == "cpu"


def test_offline_render_without_node_group_outputs_still_registers_the_tags(
    eks: ResourceIndex,
) -> None:
    # `gantry render` has no provider: the ASG name stays unset, the tags are still planned.
    assert len(asg_tags(eks, "gpu")) == 4
    assert all("autoscalingGroupName" not in t for t in asg_tags(eks, "gpu").values())


# --- Storage: the EBS CSI driver with its own IAM role -------------------------------------------


def test_node_role_does_not_carry_the_ebs_policy(eks: ResourceIndex) -> None:
    attachments = eks.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    on_nodes = {r.inputs["policyArn"] for r in attachments if r.name.startswith("gantry-eks-node-")}
    assert on_nodes == set(NODE_POLICIES)
    assert [r.name for r in attachments if r.inputs["policyArn"] == EBS_CSI_POLICY] == [
        "gantry-eks-ebs-csi"
    ]


def test_ebs_csi_driver_gets_its_own_role_through_pod_identity(wired: ResourceIndex) -> None:
    role = wired.named("gantry-eks-ebs-csi", "aws:iam/role:Role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    policy = wired.named("gantry-eks-ebs-csi", "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert policy.inputs["policyArn"] == EBS_CSI_POLICY
    association = wired.named("gantry-eks-ebs-csi", ASSOCIATION)
    assert association.inputs == {
        "clusterName": "gantry-eks",
        "namespace": "kube-system",
        "serviceAccount": "ebs-csi-controller-sa",
        "roleArn": "arn:aws:iam::000000000000:role/gantry-eks-ebs-csi",
    }
    # The agent that hands the role out runs on every node.
    agent = wired.named("gantry-eks-pod-identity", "eks:index:Addon")
    assert agent.inputs["addonName"] == "eks-pod-identity-agent"


def test_ebs_driver_starts_after_its_identity_and_nodes(eks: ResourceIndex) -> None:
    addon = eks.named("gantry-eks-ebs-csi", "eks:index:Addon")
    assert addon.inputs["addonName"] == "aws-ebs-csi-driver"
    assert "serviceAccountRoleArn" not in addon.inputs  # Pod Identity, not IRSA
    deps = set(addon.depends_on)
    assert any(d.endswith(f"{ASSOCIATION}::gantry-eks-ebs-csi") for d in deps)
    assert any(d.endswith("eks:index:Addon::gantry-eks-pod-identity") for d in deps)
    for pool in ("cpu", "gpu"):
        assert any(d.endswith(f"eks:index:ManagedNodeGroup::gantry-eks-{pool}") for d in deps)


def test_gp3_storage_class_and_kubeconfig_provider(eks: ResourceIndex) -> None:
    (sc,) = eks.find_manifests("StorageClass")
    assert sc["metadata"]["name"] == "gp3"
    assert sc["provisioner"] == "ebs.csi.aws.com"
    provider = eks.named("gantry-eks-k8s", "pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeconfig"])["kind"] == "Config"  # pulumi_eks' JSON form


# --- What the platform layer waits for -----------------------------------------------------------


def test_cluster_outputs_name_what_must_be_ready_first() -> None:
    built: list[EksCluster] = []
    run_offline(
        eks_config(),
        "eks-ready",
        program=lambda cfg: built.append(EksCluster("gantry-eks", EksClusterArgs.from_config(cfg))),
    )
    (cluster,) = built
    ready = cluster.outputs.ready
    # Each pool (its node group and ASG tags), the Pod Identity agent add-on, the EBS storage.
    kinds = [type(r).__name__ for r in ready]
    assert kinds == ["EksNodePool", "EksNodePool", "Addon", "EbsStorage"]
    assert all(isinstance(r, pulumi.Resource) for r in ready)


# --- The embedder's image on the GPU pool --------------------------------------------------------


def test_eks_embedder_builds_the_cuda_image(eks: ResourceIndex) -> None:
    embedder = load_services(eks_config())["embedder"]
    assert embedder.pool == "gpu" and embedder.resources.gpus >= 1
    assert embedder.image.dockerfile == "Dockerfile.cuda"
    assert (embedder.directory / "Dockerfile.cuda").is_file()
    build = eks.named("embedder-image-build", "command:local:Command").inputs["create"]
    assert "services/embedder/Dockerfile.cuda" in build

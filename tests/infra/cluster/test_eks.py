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

from gantry.pools import POOL_LABEL, SYSTEM_POOL
from gantry.service import load_services
from gantry.stack import SUPPORTED_K8S_VERSIONS, GantryConfig, load_stack_file
from infra.cluster.eks import (
    AMI_TYPES,
    EBS_CSI_POLICY,
    NODE_POLICIES,
    EksCluster,
    EksClusterArgs,
)
from infra.render import OutputHook, Resource, ResourceIndex, run_offline

REPO = Path(__file__).resolve().parents[3]
Program = Callable[[str], ResourceIndex]
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"


@pytest.fixture
def eks(program: Program) -> ResourceIndex:
    return program("eks")


def with_pools(cfg: GantryConfig, **changes: Any) -> GantryConfig:
    """`cfg` with every pool changed (e.g. autoscaling="managed"), validated again."""
    raw = cfg.model_dump()
    raw["pools"] = [{**p, **changes} for p in raw["pools"]]
    return GantryConfig.model_validate(raw)


@pytest.fixture(scope="module")
def managed() -> ResourceIndex:
    """The EKS stack with every pool a fixed managed node group (no Karpenter)."""
    return run_offline(with_pools(eks_config(), autoscaling="managed"), "eks-managed")


def node_group(index: ResourceIndex, pool: str) -> Resource:
    return index.named(f"gantry-eks-{pool}", "eks:index:ManagedNodeGroup")


# --- What a provider would compute, for the wiring tests below -----------------------------------


def _role_arn(args: mocks.MockResourceArgs) -> dict[str, Any]:
    # The name AWS would return: the resource name (Pulumi's suffix left out).
    return {"arn": f"arn:aws:iam::000000000000:role/{args.name}", "name": args.name}


def _queue(args: mocks.MockResourceArgs) -> dict[str, Any]:
    name = args.inputs["name"]
    return {
        "arn": f"arn:aws:sqs:us-west-2:000000000000:{name}",
        "url": f"https://sqs.us-west-2.amazonaws.com/000000000000/{name}",
    }


HOOKS: dict[str, OutputHook] = {"aws:iam/role:Role": _role_arn, "aws:sqs/queue:Queue": _queue}


def eks_config() -> GantryConfig:
    return load_stack_file(REPO / "Pulumi.eks.yaml")


@pytest.fixture(scope="module")
def wired() -> ResourceIndex:
    """The EKS stack with role and queue ARNs as AWS would return them."""
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


def test_gpu_node_group_tainted_with_nvidia_ami(managed: ResourceIndex) -> None:
    gpu = node_group(managed, "gpu").inputs
    assert gpu["amiType"] == AMI_TYPES["gpu"] == "AL2023_x86_64_NVIDIA"
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert gpu["labels"][POOL_LABEL] == "gpu"
    assert gpu["instanceTypes"] == ["g5.xlarge"]


def test_cpu_node_group_untainted_standard_ami(managed: ResourceIndex) -> None:
    cpu = node_group(managed, "cpu").inputs
    assert cpu["amiType"] == "AL2023_x86_64_STANDARD"
    assert cpu["capacityType"] == "ON_DEMAND"
    assert cpu["taints"] == []
    assert cpu["labels"] == {POOL_LABEL: "cpu", "gantry.dev/pool-kind": "cpu"}


def test_each_node_group_belongs_to_its_pool_component(managed: ResourceIndex) -> None:
    for pool in ("cpu", "gpu"):
        parent = managed.parent_of(node_group(managed, pool))
        assert parent is not None and parent.type == "gantry:cluster:EksNodePool"
        assert parent.name == f"gantry-eks-{pool}"


def test_scaling_follows_the_pools_and_desired_size_is_applied(managed: ResourceIndex) -> None:
    assert node_group(managed, "cpu").inputs["scalingConfig"] == {
        "minSize": 2,
        "maxSize": 6,
        "desiredSize": 2,
    }
    gpu = node_group(managed, "gpu").inputs
    assert gpu["scalingConfig"] == {"minSize": 0, "maxSize": 5, "desiredSize": 3}
    # No node autoscaler owns desiredSize: a later `up` must apply the stack's value (ignoring it
    # froze it, and a min_size raised above the frozen value made EKS reject the update).
    for pool in ("cpu", "gpu"):
        assert not node_group(managed, pool).inputs.get("ignoreScalingChanges")


def test_no_node_group_carries_cluster_autoscaler_tags(managed: ResourceIndex) -> None:
    # Gantry installs no cluster autoscaler (Karpenter scales pools): nothing tags for one.
    for pool in ("cpu", "gpu"):
        assert node_group(managed, pool).inputs["tags"] == {POOL_LABEL: pool}
    assert not managed.of_type("aws:autoscaling/tag:Tag")


def test_a_spot_pool_is_a_spot_node_group() -> None:
    cfg = with_pools(eks_config(), autoscaling="managed", capacity_type="spot")
    index = run_offline(cfg, "eks-spot")
    assert node_group(index, "gpu").inputs["capacityType"] == "SPOT"


# --- Storage: the EBS CSI driver with its own IAM role -------------------------------------------


def test_node_role_does_not_carry_the_ebs_policy(eks: ResourceIndex) -> None:
    attachments = eks.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    on_nodes = {r.inputs["policyArn"] for r in attachments if r.name.startswith("gantry-eks-node-")}
    assert on_nodes == set(NODE_POLICIES)
    # .get: Karpenter's own policies have no ARN offline (no provider returns one).
    assert [r.name for r in attachments if r.inputs.get("policyArn") == EBS_CSI_POLICY] == [
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
    # The system node group runs the driver's controller.
    assert any(d.endswith(f"eks:index:ManagedNodeGroup::gantry-eks-{SYSTEM_POOL}") for d in deps)


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
    # The system node group, the Pod Identity agent add-on, the EBS storage, and Karpenter with
    # its NodePools (the pools of Pulumi.eks.yaml are Karpenter's).
    kinds = [type(r).__name__ for r in ready]
    assert kinds == ["EksNodePool", "Addon", "EbsStorage", "Karpenter"]
    assert all(isinstance(r, pulumi.Resource) for r in ready)


# --- The embedder's image on the GPU pool --------------------------------------------------------


def test_eks_embedder_builds_the_cuda_image(eks: ResourceIndex) -> None:
    embedder = load_services(eks_config())["embedder"]
    assert embedder.pool == "gpu" and embedder.resources.gpus >= 1
    assert embedder.image.dockerfile == "Dockerfile.cuda"
    assert (embedder.directory / "Dockerfile.cuda").is_file()
    build = eks.named("embedder-image-build", "command:local:Command").inputs["create"]
    assert "services/embedder/Dockerfile.cuda" in build

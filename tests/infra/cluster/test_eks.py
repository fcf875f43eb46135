"""The eks provider: the inputs Gantry hands pulumi_eks (a remote component, so its own children
do not exist under mocks; these are the values AWS would receive)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from infra.cluster.eks import AMI_TYPES, autoscaler_tags
from infra.cluster.pools import GPU_RESOURCE, POOL_LABEL, scheduling
from infra.config import Pool
from infra.render import Resource, ResourceIndex

Program = Callable[[str], ResourceIndex]


@pytest.fixture
def eks(program: Program) -> ResourceIndex:
    return program("eks")


def node_group(index: ResourceIndex, pool: str) -> Resource:
    return index.named(f"gantry-eks-{pool}", "eks:index:ManagedNodeGroup")


def test_cluster_skips_default_group_and_uses_configured_version(eks: ResourceIndex) -> None:
    cluster = eks.named("gantry-eks", "eks:index:Cluster")
    assert cluster.layer == "cluster"
    assert cluster.inputs["name"] == "gantry-eks"
    assert cluster.inputs["version"] == "1.33"
    assert cluster.inputs["skipDefaultNodeGroup"] is True
    assert cluster.inputs["createOidcProvider"] is True  # IRSA for the cluster autoscaler
    role = eks.named("gantry-eks-node", "aws:iam/role:Role")
    assert cluster.inputs["instanceRoles"] == [f"{role.name}-id"]  # the node role may join


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


def test_scaling_bounds_follow_the_pools(eks: ResourceIndex) -> None:
    assert node_group(eks, "cpu").inputs["scalingConfig"] == {
        "minSize": 2,
        "maxSize": 6,
        "desiredSize": 2,
    }
    gpu = node_group(eks, "gpu").inputs
    assert gpu["scalingConfig"] == {"minSize": 0, "maxSize": 4, "desiredSize": 3}
    # The autoscaler moves desiredSize; a later `up` must not reset it.
    assert gpu["ignoreScalingChanges"] is True


def test_node_groups_tagged_for_the_cluster_autoscaler(eks: ResourceIndex) -> None:
    tags = node_group(eks, "gpu").inputs["tags"]
    assert tags["k8s.io/cluster-autoscaler/enabled"] == "true"
    assert tags["k8s.io/cluster-autoscaler/gantry-eks"] == "owned"
    # Node templates let the autoscaler scale the GPU pool up from zero nodes.
    prefix = "k8s.io/cluster-autoscaler/node-template"
    assert tags[f"{prefix}/label/{POOL_LABEL}"] == "gpu"
    assert tags[f"{prefix}/taint/nvidia.com/gpu"] == "present:NoSchedule"
    assert tags[f"{prefix}/resources/{GPU_RESOURCE}"] == "1"


def test_autoscaler_tags_for_cpu_pool_have_no_gpu_resource() -> None:
    pool = Pool(name="cpu", kind="cpu", cpu=2, memory_gib=4, min_size=1, max_size=2)
    tags = autoscaler_tags("c1", scheduling(pool))
    assert not any("resources/" in k or "/taint/" in k for k in tags)
    assert tags["k8s.io/cluster-autoscaler/c1"] == "owned"


def test_gp3_storage_class_and_kubeconfig_provider(eks: ResourceIndex) -> None:
    (sc,) = eks.find_manifests("StorageClass")
    assert sc["metadata"]["name"] == "gp3"
    assert sc["provisioner"] == "ebs.csi.aws.com"
    addon = eks.named("gantry-eks-ebs-csi", "eks:index:Addon")
    assert addon.inputs["addonName"] == "aws-ebs-csi-driver"
    provider = eks.named("gantry-eks-k8s", "pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeconfig"])["kind"] == "Config"  # pulumi_eks' JSON form


def test_aws_provider_uses_the_configured_region(eks: ResourceIndex) -> None:
    assert eks.named("gantry-eks-aws", "pulumi:providers:aws").inputs["region"] == "us-west-2"

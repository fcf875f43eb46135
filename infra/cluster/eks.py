"""eks provider: an AWS EKS cluster (pulumi_eks) with one managed node group per pool.

The node groups carry the pool's labels and taints (GPU pools: the NVIDIA taint and an AL2023
NVIDIA AMI), the pool's scaling bounds, and the cluster-autoscaler discovery and node-template
tags. Never applied in CI: tests check the inputs handed to pulumi_eks under mocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from infra.cluster import ClusterOutputs
from infra.cluster.pools import POOL_LABEL, PoolScheduling, pool_facts, scheduling
from infra.config import GantryConfig, Pool

# EKS-optimized Amazon Linux 2023 AMIs (AL2 AMIs end with Kubernetes 1.32).
AMI_TYPES = {"cpu": "AL2023_x86_64_STANDARD", "gpu": "AL2023_x86_64_NVIDIA"}
# Root volume per node, GiB: GPU images (CUDA, torch) are large.
DISK_GIB = {"cpu": 50, "gpu": 100}
# Kubernetes taint effects as the EKS node group API spells them.
TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}
# Managed policies every node needs: join the cluster, pod networking, pull from ECR, and EBS
# volumes for the gp3 StorageClass (the EBS CSI add-on uses the node role).
NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
)
STORAGE_CLASS = "gp3"


@dataclass(frozen=True)
class EksClusterArgs:
    name: str
    kubernetes_version: str
    region: str
    pools: tuple[Pool, ...]
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: GantryConfig) -> EksClusterArgs:
        eks_cfg = cfg.cluster.eks
        assert eks_cfg is not None  # guaranteed by ClusterConfig validation
        return cls(
            name=cfg.cluster.name,
            kubernetes_version=cfg.cluster.kubernetes_version,
            region=eks_cfg.region,
            pools=tuple(cfg.pools),
            vpc_id=eks_cfg.vpc_id,
            subnet_ids=tuple(eks_cfg.subnet_ids),
        )


def autoscaler_tags(cluster_name: str, facts: PoolScheduling) -> dict[str, str]:
    """Cluster-autoscaler tags: auto-discovery, plus node templates so a pool scales from 0."""
    prefix = "k8s.io/cluster-autoscaler"
    tags = {f"{prefix}/enabled": "true", f"{prefix}/{cluster_name}": "owned"}
    for key, value in facts.node_labels.items():
        tags[f"{prefix}/node-template/label/{key}"] = value
    for t in facts.taints:
        tags[f"{prefix}/node-template/taint/{t.key}"] = f"{t.value}:{t.effect}"
    if facts.gpu_resource:
        tags[f"{prefix}/node-template/resources/{facts.gpu_resource}"] = str(facts.gpus_per_node)
    return tags


def node_group_inputs(cluster_name: str, pool: Pool) -> dict[str, Any]:
    """The pool-derived inputs of one managed node group (pure; tested on its own)."""
    facts = scheduling(pool)
    return {
        "instance_types": [pool.instance_type],
        "ami_type": AMI_TYPES[pool.kind],
        "disk_size": DISK_GIB[pool.kind],
        "scaling_config": aws.eks.NodeGroupScalingConfigArgs(
            min_size=pool.min_size, max_size=pool.max_size, desired_size=pool.desired
        ),
        "labels": facts.node_labels,
        "taints": [
            aws.eks.NodeGroupTaintArgs(key=t.key, value=t.value, effect=TAINT_EFFECTS[t.effect])
            for t in facts.taints
        ],
        "tags": {POOL_LABEL: pool.name, **autoscaler_tags(cluster_name, facts)},
    }


class EksCluster(pulumi.ComponentResource):
    """An EKS cluster, a node IAM role, one managed node group per pool, and a gp3 StorageClass."""

    outputs: ClusterOutputs

    def __init__(
        self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:cluster:EksCluster", name, None, opts)
        aws_provider = aws.Provider(
            f"{name}-aws", region=args.region, opts=pulumi.ResourceOptions(parent=self)
        )
        child = pulumi.ResourceOptions(parent=self, provider=aws_provider)
        role = aws.iam.Role(
            f"{name}-node",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{arn.rsplit('/', 1)[1]}", role=role.name, policy_arn=arn, opts=child
            )
            for arn in NODE_POLICIES
        ]
        cluster = eks.Cluster(
            name,
            name=args.name,
            version=args.kubernetes_version,
            vpc_id=args.vpc_id,
            subnet_ids=list(args.subnet_ids) or None,
            # Node groups come from the pools, not pulumi_eks' default group.
            skip_default_node_group=True,
            instance_roles=[role],
            authentication_mode=eks.AuthenticationMode.API,
            # IRSA for the cluster autoscaler and other add-ons of the platform layer.
            create_oidc_provider=True,
            tags={"gantry.dev/cluster": args.name},
            opts=pulumi.ResourceOptions(parent=self, providers={"aws": aws_provider}),
        )
        node_groups = [
            eks.ManagedNodeGroup(
                f"{name}-{pool.name}",
                cluster=cluster,
                node_role=role,
                # The cluster autoscaler owns desired_size once running; don't undo its work.
                ignore_scaling_changes=True,
                **node_group_inputs(args.name, pool),
                opts=pulumi.ResourceOptions(
                    parent=self, providers={"aws": aws_provider}, depends_on=attachments
                ),
            )
            for pool in args.pools
        ]
        # The EBS CSI driver backs the gp3 StorageClass; its pods need nodes to become healthy.
        ebs_csi = eks.Addon(
            f"{name}-ebs-csi",
            cluster=cluster,
            addon_name="aws-ebs-csi-driver",
            opts=pulumi.ResourceOptions(
                parent=self, providers={"aws": aws_provider}, depends_on=node_groups
            ),
        )
        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(cluster.kubeconfig_json)
        provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=kubeconfig, opts=pulumi.ResourceOptions(parent=self)
        )
        k8s.storage.v1.StorageClass(
            f"{name}-{STORAGE_CLASS}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=STORAGE_CLASS,
                annotations={"storageclass.kubernetes.io/is-default-class": "true"},
            ),
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3"},
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[ebs_csi]),
        )
        self.outputs = ClusterOutputs(
            name=args.name,
            provider_kind="eks",
            kubeconfig=kubeconfig,
            k8s_provider=provider,
            pools=pool_facts(list(args.pools)),
            storage_class=STORAGE_CLASS,
            kubernetes_version=args.kubernetes_version,
        )
        self.register_outputs({"kubeconfig": kubeconfig})

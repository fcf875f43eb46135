"""eks provider: an AWS EKS cluster (pulumi_eks) with one managed node group per pool.

The node groups carry the pool's labels and taints (GPU pools: the NVIDIA taint and an AL2023
NVIDIA AMI) and the pool's sizes; their Auto Scaling groups carry the cluster-autoscaler
node-template tags. The VPC CNI enforces NetworkPolicies; the EBS CSI driver gets its own IAM
role through EKS Pod Identity. Never applied in CI: tests check the inputs under mocks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from gantry.pools import POOL_LABEL, Pool, PoolScheduling, pool_facts, scheduling
from gantry.stack import GantryConfig
from infra.cluster import ClusterOutputs, ImageTarget

# EKS-optimized Amazon Linux 2023 AMIs (AL2 AMIs end with Kubernetes 1.32).
AMI_TYPES = {"cpu": "AL2023_x86_64_STANDARD", "gpu": "AL2023_x86_64_NVIDIA"}
# What the nodes run: every AMI type above is x86_64, so images are built for it whatever
# machine builds them.
IMAGE_PLATFORM = "linux/amd64"
# Root volume per node, GiB: GPU images (CUDA, torch) are large.
DISK_GIB = {"cpu": 50, "gpu": 100}
# Kubernetes taint effects as the EKS node group API spells them.
TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}
_MANAGED = "arn:aws:iam::aws:policy"
# Managed policies every node needs: join the cluster (it also lets the Pod Identity agent fetch
# pod credentials), pod networking, pulling from ECR. Nothing else runs as the node role.
NODE_POLICIES = (
    f"{_MANAGED}/AmazonEKSWorkerNodePolicy",
    f"{_MANAGED}/AmazonEKS_CNI_Policy",
    f"{_MANAGED}/AmazonEC2ContainerRegistryReadOnly",
)
# The EBS CSI controller's own role: AL2023 nodes answer IMDSv2 with a hop limit of 1, so pods
# cannot borrow the node role, and the gp3 volumes would never be created.
EBS_CSI_POLICY = f"{_MANAGED}/service-role/AmazonEBSCSIDriverPolicy"
EBS_CSI_NAMESPACE = "kube-system"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"  # created by the aws-ebs-csi-driver add-on
# Who may assume a role handed out by EKS Pod Identity (the EKS Auth service).
POD_IDENTITY_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ],
}
NODE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
STORAGE_CLASS = "gp3"
_AUTOSCALER = "k8s.io/cluster-autoscaler"


@dataclass(frozen=True)
class EksClusterArgs:
    name: str
    kubernetes_version: str
    region: str
    pools: tuple[Pool, ...]
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    image_registry: str | None = None  # None: ECR in the stack's account and region

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
            image_registry=eks_cfg.image_registry,
        )


def discovery_tags(cluster_name: str) -> dict[str, str]:
    """Cluster-autoscaler auto-discovery tags (EKS puts them on the group's ASG by itself too)."""
    return {f"{_AUTOSCALER}/enabled": "true", f"{_AUTOSCALER}/{cluster_name}": "owned"}


def node_template_tags(facts: PoolScheduling) -> dict[str, str]:
    """What a node of the pool will look like, so a cluster autoscaler can scale it from 0.

    The autoscaler reads these from the Auto Scaling group, never from the node group resource.
    """
    prefix = f"{_AUTOSCALER}/node-template"
    tags = {f"{prefix}/label/{key}": value for key, value in facts.node_labels.items()}
    for t in facts.taints:
        tags[f"{prefix}/taint/{t.key}"] = f"{t.value}:{t.effect}"
    if facts.gpu_resource:
        tags[f"{prefix}/resources/{facts.gpu_resource}"] = str(facts.gpus_per_node)
    return tags


def node_group_inputs(cluster_name: str, pool: Pool) -> dict[str, Any]:
    """The pool-derived inputs of one managed node group (pure; tested on its own)."""
    facts = scheduling(pool)
    return {
        "instance_types": [pool.instance_type],
        "ami_type": AMI_TYPES[pool.kind],
        "disk_size": DISK_GIB[pool.kind],
        # Applied on every `up`: Gantry installs no node autoscaler, so the stack is the only
        # owner of desired_size (ignoring it would also make EKS reject a min_size above the
        # frozen value).
        "scaling_config": aws.eks.NodeGroupScalingConfigArgs(
            min_size=pool.min_size, max_size=pool.max_size, desired_size=pool.desired
        ),
        "labels": facts.node_labels,
        "taints": [
            aws.eks.NodeGroupTaintArgs(key=t.key, value=t.value, effect=TAINT_EFFECTS[t.effect])
            for t in facts.taints
        ],
        # These tag the node group resource only; EKS copies none of them to its ASG.
        "tags": {POOL_LABEL: pool.name, **discovery_tags(cluster_name)},
    }


def _first_asg(resources: Sequence[aws.eks.outputs.NodeGroupResource] | None) -> str | None:
    groups = resources[0].autoscaling_groups if resources else None
    return groups[0].name if groups else None


def asg_name(node_group: pulumi.Output[aws.eks.NodeGroup]) -> pulumi.Output[str]:
    """The name of the Auto Scaling group EKS made for a managed node group (one per group)."""

    def of(group: aws.eks.NodeGroup | None) -> pulumi.Input[str | None]:
        # None only offline: pulumi_eks' children do not exist under mocks (`gantry render`).
        return group.resources.apply(_first_asg) if group is not None else None

    return cast(pulumi.Output[str], node_group.apply(of))


def _tag_suffix(key: str) -> str:
    """`.../node-template/taint/nvidia.com/gpu` -> `taint-nvidia.com-gpu` (unique per pool)."""
    return key.removeprefix(f"{_AUTOSCALER}/node-template/").replace("/", "-")


@dataclass(frozen=True)
class EksNodePoolArgs:
    cluster_name: str
    pool: Pool
    cluster: eks.Cluster
    node_role: aws.iam.Role
    depends_on: tuple[pulumi.Resource, ...] = ()  # the node role's policy attachments


class EksNodePool(pulumi.ComponentResource):
    """One pool: a managed node group, and its node-template tags on the group's ASG."""

    def __init__(
        self, name: str, args: EksNodePoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:cluster:EksNodePool", name, None, opts)
        group = eks.ManagedNodeGroup(
            name,
            cluster=args.cluster,
            node_role=args.node_role,
            **node_group_inputs(args.cluster_name, args.pool),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        asg = asg_name(group.node_group)
        for key, value in node_template_tags(scheduling(args.pool)).items():
            aws.autoscaling.Tag(
                f"{name}-{_tag_suffix(key)}",
                autoscaling_group_name=asg,
                # A hint for the autoscaler, not an instance tag.
                tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})


@dataclass(frozen=True)
class EbsStorageArgs:
    cluster_name: str
    cluster: eks.Cluster
    k8s_provider: k8s.Provider
    depends_on: tuple[pulumi.Resource, ...] = ()  # nodes and the Pod Identity agent


class EbsStorage(pulumi.ComponentResource):
    """EBS volumes for PersistentVolumeClaims: the EBS CSI driver add-on, its IAM role through
    EKS Pod Identity, and the default gp3 StorageClass."""

    def __init__(
        self, name: str, args: EbsStorageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:cluster:EbsStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-csi", assume_role_policy=json.dumps(POD_IDENTITY_TRUST), opts=child
        )
        policy = aws.iam.RolePolicyAttachment(
            f"{name}-csi", role=role.name, policy_arn=EBS_CSI_POLICY, opts=child
        )
        # Before the driver's pods start: EKS injects the credentials when a pod is created.
        association = aws.eks.PodIdentityAssociation(
            f"{name}-csi",
            cluster_name=args.cluster_name,
            namespace=EBS_CSI_NAMESPACE,
            service_account=EBS_CSI_SERVICE_ACCOUNT,
            role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.cluster]),
        )
        driver = eks.Addon(
            f"{name}-csi",
            cluster=args.cluster,
            addon_name="aws-ebs-csi-driver",
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*args.depends_on, association, policy]
            ),
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
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.k8s_provider, depends_on=[driver]
            ),
        )
        self.register_outputs({})


def image_target(args: EksClusterArgs, aws_provider: aws.Provider) -> ImageTarget:
    """Images are pushed to `image_registry`, or by default to ECR in the cluster's account and
    region (a repository per service, created by the serving layer with this provider, logged
    in to with the AWS CLI)."""
    if args.image_registry:
        return ImageTarget("registry", registry=args.image_registry, platform=IMAGE_PLATFORM)
    region = args.region
    account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(provider=aws_provider))
    registry = account.account_id.apply(lambda a: f"{a}.dkr.ecr.{region}.amazonaws.com")
    login = registry.apply(
        lambda r: (
            f"aws ecr get-login-password --region {region}"
            f" | docker login --username AWS --password-stdin {r}"
        )
    )
    return ImageTarget(
        "registry",
        registry=registry,
        login=login,
        ecr_provider=aws_provider,
        platform=IMAGE_PLATFORM,
    )


class EksCluster(pulumi.ComponentResource):
    """An EKS cluster, a node IAM role, a node pool per pool, Pod Identity and EBS storage."""

    outputs: ClusterOutputs

    def __init__(
        self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:cluster:EksCluster", name, None, opts)
        aws_provider = aws.Provider(
            f"{name}-aws", region=args.region, opts=pulumi.ResourceOptions(parent=self)
        )
        # Children inherit the provider: plain AWS resources and pulumi_eks' components alike.
        on_aws = pulumi.ResourceOptions(parent=self, providers={"aws": aws_provider})
        role = aws.iam.Role(f"{name}-node", assume_role_policy=json.dumps(NODE_TRUST), opts=on_aws)
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{arn.rsplit('/', 1)[1]}", role=role.name, policy_arn=arn, opts=on_aws
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
            # IRSA for add-ons of the platform layer that want it (Pod Identity needs none).
            create_oidc_provider=True,
            # The VPC CNI enforces NetworkPolicies only when asked to (the teams' default-deny).
            vpc_cni_options=eks.VpcCniOptionsArgs(enable_network_policy=True),
            tags={"gantry.dev/cluster": args.name},
            opts=on_aws,
        )
        pools = [
            EksNodePool(
                f"{name}-{pool.name}",
                EksNodePoolArgs(args.name, pool, cluster, role, tuple(attachments)),
                opts=on_aws,
            )
            for pool in args.pools
        ]
        # Hands pods the IAM role of their service account (EKS Pod Identity); a DaemonSet.
        pod_identity = eks.Addon(
            f"{name}-pod-identity",
            cluster=cluster,
            addon_name="eks-pod-identity-agent",
            opts=pulumi.ResourceOptions(
                parent=self, providers={"aws": aws_provider}, depends_on=pools
            ),
        )
        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(cluster.kubeconfig_json)
        provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=kubeconfig, opts=pulumi.ResourceOptions(parent=self)
        )
        # The driver's pods need nodes and the agent to become healthy.
        storage = EbsStorage(
            f"{name}-ebs",
            EbsStorageArgs(args.name, cluster, provider, (*pools, pod_identity)),
            opts=on_aws,
        )
        self.outputs = ClusterOutputs(
            name=args.name,
            provider_kind="eks",
            kubeconfig=kubeconfig,
            k8s_provider=provider,
            pools=pool_facts(list(args.pools)),
            storage_class=STORAGE_CLASS,
            kubernetes_version=args.kubernetes_version,
            images=image_target(args, aws_provider),
            ready=[*pools, pod_identity, storage],
        )
        self.register_outputs({"kubeconfig": kubeconfig})

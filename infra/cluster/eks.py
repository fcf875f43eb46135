"""eks provider: an AWS EKS cluster (pulumi_eks); Karpenter scales its pools, or fixed groups.

A pool with `autoscaling: karpenter` (the default on EKS) becomes a Karpenter NodePool
(infra/cluster/karpenter.py), and Karpenter runs on a small system node group; a `managed` pool
is a managed node group of `desired_size` nodes with the pool's labels and taints (GPU pools: the
NVIDIA taint and an AL2023 NVIDIA AMI). No cluster autoscaler is installed, so no node group
carries its tags. The VPC CNI enforces NetworkPolicies; the EBS CSI driver gets its own IAM
role through EKS Pod Identity. EBS is ReadWriteOnce: the teams' job volumes use the stack's
`platform.job_storage_class` (an EFS class, which Gantry does not install: docs/jobs.md). Never
applied in CI: tests check the inputs under mocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from gantry.pools import (
    POOL_LABEL,
    SYSTEM_POOL,
    Pool,
    Taint,
    autoscaling_of,
    pool_facts,
    scheduling,
)
from gantry.stack import GantryConfig
from infra.cluster import ClusterOutputs, ImageTarget, JobStorage
from infra.cluster.eks_nodes import (
    ARCH,
    DISK_GIB,
    MANAGED,
    NODE_POLICIES,
    NODE_TRUST,
    pod_identity_role,
)
from infra.cluster.karpenter import Karpenter, KarpenterArgs

# EKS-optimized Amazon Linux 2023 AMIs (AL2 AMIs end with Kubernetes 1.32).
AMI_TYPES = {"cpu": "AL2023_x86_64_STANDARD", "gpu": "AL2023_x86_64_NVIDIA"}
# What the nodes run: every AMI type above is x86_64, so images are built for it whatever
# machine builds them.
IMAGE_PLATFORM = f"linux/{ARCH}"
# Kubernetes taint effects as the EKS node group API spells them.
TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}
# EC2 purchase options as the EKS node group API spells them.
CAPACITY_TYPES = {"on-demand": "ON_DEMAND", "spot": "SPOT"}
# The EBS CSI controller's own role: AL2023 nodes answer IMDSv2 with a hop limit of 1, so pods
# cannot borrow the node role, and the gp3 volumes would never be created.
EBS_CSI_POLICY = f"{MANAGED}/service-role/AmazonEBSCSIDriverPolicy"
EBS_CSI_NAMESPACE = "kube-system"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"  # created by the aws-ebs-csi-driver add-on
STORAGE_CLASS = "gp3"
# The node group the system pods run on when Karpenter scales the pools: Karpenter's two
# controllers (1 core, 1 GiB each, one per node), CoreDNS, the EBS CSI controller. Two m6i.large
# (2 vCPU, 8 GiB each; cpu and memory_gib are allocatable, in cores and GiB), a fixed size. The
# taint keeps every other pod off it; those system pods tolerate it.
SYSTEM_NODES = Pool(
    name=SYSTEM_POOL,
    kind="cpu",
    instance_type="m6i.large",
    cpu=1.9,
    memory_gib=6.5,
    min_size=2,
    max_size=2,
    taints=[Taint(key="CriticalAddonsOnly", value="true", effect="NoSchedule")],
)


@dataclass(frozen=True)
class EksClusterArgs:
    name: str
    kubernetes_version: str
    region: str
    pools: tuple[Pool, ...]
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    image_registry: str | None = None  # None: ECR in the stack's account and region
    # The teams' ReadWriteMany job volumes' class (`gantry:platform.job_storage_class`): EBS is
    # ReadWriteOnce, so an EFS class the user installs (docs/jobs.md).
    job_storage_class: str | None = None

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
            job_storage_class=cfg.platform.job_storage_class,
        )

    @property
    def karpenter_pools(self) -> tuple[Pool, ...]:
        return tuple(p for p in self.pools if autoscaling_of(p, "eks") == "karpenter")

    @property
    def managed_pools(self) -> tuple[Pool, ...]:
        """Fixed node groups: the `managed` pools, and the system group when Karpenter runs."""
        fixed = tuple(p for p in self.pools if autoscaling_of(p, "eks") == "managed")
        return (*fixed, SYSTEM_NODES) if self.karpenter_pools else fixed


def node_group_inputs(pool: Pool) -> dict[str, Any]:
    """The pool-derived inputs of one managed node group (pure; tested on its own)."""
    facts = scheduling(pool)
    return {
        "instance_types": [pool.instance_type],
        "ami_type": AMI_TYPES[pool.kind],
        "disk_size": DISK_GIB[pool.kind],
        # Applied on every `up`: no autoscaler scales a managed group, so the stack is the only
        # owner of desired_size (ignoring it would also make EKS reject a min_size above the
        # frozen value).
        "scaling_config": aws.eks.NodeGroupScalingConfigArgs(
            min_size=pool.min_size, max_size=pool.max_size, desired_size=pool.desired
        ),
        "capacity_type": CAPACITY_TYPES[pool.capacity_type],
        "labels": facts.node_labels,
        "taints": [
            aws.eks.NodeGroupTaintArgs(key=t.key, value=t.value, effect=TAINT_EFFECTS[t.effect])
            for t in facts.taints
        ],
        "tags": {POOL_LABEL: pool.name},
    }


@dataclass(frozen=True)
class EksNodePoolArgs:
    pool: Pool
    cluster: eks.Cluster
    node_role: aws.iam.Role
    depends_on: tuple[pulumi.Resource, ...] = ()  # the node role's policy attachments


class EksNodePool(pulumi.ComponentResource):
    """One fixed pool: a managed node group of `desired_size` nodes."""

    def __init__(
        self, name: str, args: EksNodePoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:cluster:EksNodePool", name, None, opts)
        eks.ManagedNodeGroup(
            name,
            cluster=args.cluster,
            node_role=args.node_role,
            **node_group_inputs(args.pool),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
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
        role, association = pod_identity_role(
            f"{name}-csi",
            args.cluster_name,
            (EBS_CSI_NAMESPACE, EBS_CSI_SERVICE_ACCOUNT),
            args.cluster,
            self,
        )
        policy = aws.iam.RolePolicyAttachment(
            f"{name}-csi", role=role.name, policy_arn=EBS_CSI_POLICY, opts=child
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


def ecr_registry(account: str, region: str) -> str:
    """The account's ECR registry in `region` (images are `<registry>/<repository>:<tag>`)."""
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def image_target(args: EksClusterArgs, aws_provider: aws.Provider) -> ImageTarget:
    """Images are pushed to `image_registry`, or by default to ECR in the cluster's account and
    region (a repository per service, created by the serving layer with this provider, logged
    in to with the AWS CLI)."""
    if args.image_registry:
        return ImageTarget("registry", registry=args.image_registry, platform=IMAGE_PLATFORM)
    region = args.region
    account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(provider=aws_provider))
    registry = account.account_id.apply(lambda a: ecr_registry(a, region))
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
    """An EKS cluster, a node IAM role, a node group per fixed pool, Karpenter for the others,
    Pod Identity and EBS storage."""

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
        pools = {
            pool.name: EksNodePool(
                f"{name}-{pool.name}",
                EksNodePoolArgs(pool, cluster, role, tuple(attachments)),
                opts=on_aws,
            )
            for pool in args.managed_pools
        }
        # Hands pods the IAM role of their service account (EKS Pod Identity); a DaemonSet.
        pod_identity = eks.Addon(
            f"{name}-pod-identity",
            cluster=cluster,
            addon_name="eks-pod-identity-agent",
            opts=pulumi.ResourceOptions(
                parent=self, providers={"aws": aws_provider}, depends_on=list(pools.values())
            ),
        )
        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(cluster.kubeconfig_json)
        provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=kubeconfig, opts=pulumi.ResourceOptions(parent=self)
        )
        # The driver's pods need nodes and the agent to become healthy.
        storage = EbsStorage(
            f"{name}-ebs",
            EbsStorageArgs(args.name, cluster, provider, (*pools.values(), pod_identity)),
            opts=on_aws,
        )
        ready: list[pulumi.Resource] = [*pools.values(), pod_identity, storage]
        if args.karpenter_pools:
            account = aws.get_caller_identity_output(
                opts=pulumi.InvokeOptions(provider=aws_provider)
            ).account_id
            ready.append(
                Karpenter(
                    f"{name}-karpenter",
                    KarpenterArgs(
                        cluster_name=args.name,
                        region=args.region,
                        account_id=account,
                        cluster=cluster,
                        k8s_provider=provider,
                        pools=args.karpenter_pools,
                        subnet_ids=args.subnet_ids,
                        system_node_selector=scheduling(SYSTEM_NODES).node_selector,
                        ready=(pools[SYSTEM_POOL], pod_identity),
                    ),
                    opts=on_aws,
                )
            )
        self.outputs = ClusterOutputs(
            name=args.name,
            provider_kind="eks",
            kubeconfig=kubeconfig,
            k8s_provider=provider,
            pools=pool_facts(list(args.pools)),
            storage_class=STORAGE_CLASS,
            job_storage=JobStorage(args.job_storage_class),
            kubernetes_version=args.kubernetes_version,
            images=image_target(args, aws_provider),
            ready=ready,
        )
        self.register_outputs({"kubeconfig": kubeconfig})

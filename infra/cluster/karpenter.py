"""Karpenter on EKS: its AWS side, the discovery tags, its two Helm releases, a NodePool and an
EC2NodeClass per pool that uses it.

Apply order (recorded as `depends_on`, which the offline checks read): the CRDs (karpenter-crd)
-> the controller (karpenter, after its IAM role, queue and the system node group) -> each
pool's EC2NodeClass and NodePool -> the workloads (ClusterOutputs.ready holds this component).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from gantry.pools import Pool
from infra.addons.release import ClusterTarget, helm_release
from infra.cluster.karpenter_aws import NAMESPACE, SERVICE_ACCOUNT, KarpenterAws, KarpenterAwsArgs
from infra.cluster.karpenter_pools import (
    DISCOVERY_TAG,
    NODECLASS_API,
    NODEPOOL_API,
    node_class,
    node_pool,
)


def cluster_security_group(cluster: eks.Cluster) -> pulumi.Output[str]:
    """The security group EKS made for the cluster: managed node groups' nodes carry it, so
    Karpenter's nodes get it too (they reach the control plane and every other node)."""

    def of(c: aws.eks.Cluster | None) -> pulumi.Input[str | None]:
        # None only offline: pulumi_eks' children do not exist under mocks (`gantry render`).
        return c.vpc_config.cluster_security_group_id if c is not None else None

    return cast(pulumi.Output[str], cluster.eks_cluster.apply(of))


@dataclass(frozen=True)
class KarpenterNodePoolArgs:
    pool: Pool
    cluster_name: str
    node_role: pulumi.Input[str]  # the node role's name (EC2NodeClass.spec.role)
    k8s_provider: k8s.Provider
    depends_on: tuple[pulumi.Resource, ...]  # the CRDs and the controller


class KarpenterNodePool(pulumi.ComponentResource):
    """One pool as Karpenter scales it: its EC2NodeClass and NodePool (both named after it)."""

    def __init__(
        self, name: str, args: KarpenterNodePoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:cluster:KarpenterNodePool", name, None, opts)
        meta = {"name": args.pool.name}
        after = list(args.depends_on)
        node_class_ = k8s.apiextensions.CustomResource(
            f"{name}-nodeclass",
            api_version=NODECLASS_API,
            kind="EC2NodeClass",
            metadata=meta,
            spec=node_class(args.pool, args.cluster_name, args.node_role),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=after),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-nodepool",
            api_version=NODEPOOL_API,
            kind="NodePool",
            metadata=meta,
            spec=node_pool(args.pool),
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.k8s_provider, depends_on=[*after, node_class_]
            ),
        )
        self.register_outputs({})


@dataclass(frozen=True)
class KarpenterArgs:
    cluster_name: str
    region: str
    account_id: pulumi.Input[str]
    cluster: eks.Cluster
    k8s_provider: k8s.Provider
    pools: tuple[Pool, ...]  # the pools Karpenter scales
    subnet_ids: tuple[str, ...]  # the cluster's subnets: tagged for discovery
    system_node_selector: dict[str, str]  # pins the controller on the system node group
    ready: tuple[pulumi.Resource, ...] = ()  # the system node group, the Pod Identity agent


class Karpenter(pulumi.ComponentResource):
    """The node autoscaler of an EKS cluster, and a NodePool per pool it scales."""

    def __init__(
        self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:cluster:Karpenter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        on_k8s = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider)
        cloud = KarpenterAws(
            name,
            KarpenterAwsArgs(args.cluster_name, args.region, args.account_id, args.cluster),
            child,
        )
        # Where Karpenter launches nodes: the subnets and security group carrying the tag that
        # every EC2NodeClass selects by.
        tags = [
            aws.ec2.Tag(
                f"{name}-{subnet}",
                resource_id=subnet,
                key=DISCOVERY_TAG,
                value=args.cluster_name,
                opts=child,
            )
            for subnet in args.subnet_ids
        ]
        tags.append(
            aws.ec2.Tag(
                f"{name}-cluster-sg",
                resource_id=cluster_security_group(args.cluster),
                key=DISCOVERY_TAG,
                value=args.cluster_name,
                opts=child,
            )
        )
        crds = helm_release(
            "karpenter-crd", "karpenter-crd", NAMESPACE, ClusterTarget("eks", args.ready), on_k8s
        )
        computed: dict[str, Any] = {
            # The queue is named after the cluster (a plain value: Helm values are deep-copied).
            "settings": {"clusterName": args.cluster_name, "interruptionQueue": args.cluster_name},
            "serviceAccount": {"name": SERVICE_ACCOUNT},  # the Pod Identity association's
            "nodeSelector": args.system_node_selector,
        }
        controller = helm_release(
            "karpenter",
            "karpenter",
            NAMESPACE,
            ClusterTarget("eks", (*args.ready, cloud, *tags)),
            pulumi.ResourceOptions.merge(on_k8s, pulumi.ResourceOptions(depends_on=[crds])),
            computed,
            skip_crds=True,  # the karpenter-crd release owns them
        )
        for pool in args.pools:
            KarpenterNodePool(
                f"{name}-{pool.name}",
                KarpenterNodePoolArgs(
                    pool,
                    args.cluster_name,
                    cloud.node_role.name,
                    args.k8s_provider,
                    (crds, controller),
                ),
                child,
            )
        self.register_outputs({"queue": cloud.queue.name})

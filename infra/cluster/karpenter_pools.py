"""A Karpenter `NodePool` and `EC2NodeClass` per pool, from the pool model (pure; tested alone).

Every field is Karpenter v1's (website/content/en/v1.14/concepts/nodepools.md, nodeclasses.md,
disruption.md in aws/karpenter-provider-aws); the chart's CRDs validate them offline.
"""

from __future__ import annotations

from typing import Any

from gantry.pools import EC2_INSTANCE_TYPE, GPU_RESOURCE, POOL_LABEL, Pool, scheduling
from infra.cluster.eks_nodes import ARCH, DISK_GIB

NODEPOOL_API = "karpenter.sh/v1"
NODECLASS_API = "karpenter.k8s.aws/v1"
# EKS-optimized Amazon Linux 2023, newest release. With an alias Karpenter picks the AMI variant
# per instance type: the NVIDIA one for GPU instances (g5), the standard one otherwise.
AMI_ALIAS = "al2023@latest"
# The tag Karpenter finds the cluster's subnets and security group by (Gantry sets it on both).
DISCOVERY_TAG = "karpenter.sh/discovery"
# AL2023's root device (its size: DISK_GIB).
ROOT_DEVICE = "/dev/xvda"
# Replace every node after 30 days (Karpenter's default, spelled out): patched AMIs roll in.
EXPIRE_AFTER = "720h"
# Consolidation per pool kind. CPU nodes are cheap to start: repack them when they are empty or
# underutilized, after 1 minute. GPU nodes take minutes to start (CUDA images): remove them
# only when empty, after 10 minutes without GPU pods, so a short dip does not cost a cold start.
# Budgets: at most 10% of a CPU pool's nodes (Karpenter's default) and one GPU node at a time
# may be disrupted at once (consolidation, drift, expiry).
DISRUPTION: dict[str, dict[str, Any]] = {
    "cpu": {
        "consolidationPolicy": "WhenEmptyOrUnderutilized",
        "consolidateAfter": "1m",
        "budgets": [{"nodes": "10%"}],
    },
    "gpu": {
        "consolidationPolicy": "WhenEmpty",
        "consolidateAfter": "10m",
        "budgets": [{"nodes": "1"}],
    },
}


def node_class(pool: Pool, cluster_name: str, node_role: Any) -> dict[str, Any]:
    """The pool's `EC2NodeClass` spec: AMI, the node role, subnets and security groups by the
    discovery tag, the root volume."""
    discovery = [{"tags": {DISCOVERY_TAG: cluster_name}}]
    return {
        "role": node_role,
        "amiSelectorTerms": [{"alias": AMI_ALIAS}],
        "subnetSelectorTerms": discovery,
        "securityGroupSelectorTerms": discovery,
        "blockDeviceMappings": [
            {
                "deviceName": ROOT_DEVICE,
                "ebs": {
                    "volumeSize": f"{DISK_GIB[pool.kind]}Gi",
                    "volumeType": "gp3",
                    "encrypted": True,
                    "deleteOnTermination": True,
                },
            }
        ],
        "tags": {"gantry.dev/cluster": cluster_name, POOL_LABEL: pool.name},
    }


def _requirement(key: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


def limits(pool: Pool) -> dict[str, Any]:
    """At most `max_size` nodes (and their GPUs). CPU and memory are left out: Karpenter counts a
    node's capacity, the pool declares allocatable (less), so max_size x allocatable would stop
    the pool a node short of max_size."""
    out: dict[str, Any] = {"nodes": str(pool.max_size)}
    if pool.gpus_per_node:
        out[GPU_RESOURCE] = str(pool.max_size * pool.gpus_per_node)
    return out


def node_pool(pool: Pool) -> dict[str, Any]:
    """The pool's `NodePool` spec: its labels and taints on every node, one instance family and
    size (the pool's shape), its capacity type, limits and disruption."""
    facts = scheduling(pool)
    m = EC2_INSTANCE_TYPE.match(pool.instance_type)
    assert m is not None  # validated by gantry/stack.py for karpenter pools
    return {
        "template": {
            "metadata": {"labels": facts.node_labels},
            "spec": {
                "nodeClassRef": {
                    "group": NODECLASS_API.split("/")[0],
                    "kind": "EC2NodeClass",
                    "name": pool.name,
                },
                "taints": facts.taints_k8s(),
                "requirements": [
                    _requirement("karpenter.k8s.aws/instance-family", m[1]),
                    _requirement("karpenter.k8s.aws/instance-size", m[2]),
                    _requirement("karpenter.sh/capacity-type", pool.capacity_type),
                    _requirement("kubernetes.io/arch", ARCH),
                    _requirement("kubernetes.io/os", "linux"),
                ],
                "expireAfter": EXPIRE_AFTER,
            },
        },
        "limits": limits(pool),
        "disruption": DISRUPTION[pool.kind],
    }

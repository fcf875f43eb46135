"""Layer 1: the Kubernetes cluster and its node pools (kind, EKS or an existing cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from gantry.pools import PoolScheduling


@dataclass(frozen=True)
class ClusterOutputs:
    """What every provider hands to layers 2 and 3, so they never ask which provider it was."""

    name: str
    provider_kind: Literal["kind", "eks", "existing"]
    kubeconfig: pulumi.Output[str]  # secret
    k8s_provider: k8s.Provider
    pools: dict[str, PoolScheduling]
    # StorageClass for persistent volumes (Prometheus): per provider.
    storage_class: str
    kubernetes_version: str
    # What must exist before workloads are applied: depend on these (`depends_on=ready`) so that
    # Helm releases wait for nodes to join and for the cluster's own add-ons. EKS: the node
    # pools, the Pod Identity agent and the EBS storage (CSI driver, gp3 StorageClass); kind: the
    # command that creates the cluster; existing: nothing (the cluster is already up).
    ready: list[pulumi.Resource] = field(default_factory=list)

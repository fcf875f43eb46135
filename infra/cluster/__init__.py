"""Layer 1: the Kubernetes cluster and its node pools (kind, EKS or an existing cluster)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from infra.cluster.pools import PoolScheduling


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

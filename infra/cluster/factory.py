"""Pick the cluster provider named in config; every provider returns the same ClusterOutputs."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.cluster import ClusterOutputs
from infra.cluster.pools import pool_facts
from infra.config import GantryConfig


def create_cluster(cfg: GantryConfig) -> ClusterOutputs:
    # TEMPORARY scaffold (foundation issue replaces this with kind/eks/existing components).
    provider = k8s.Provider("cluster", context=cfg.cluster.existing.context)
    return ClusterOutputs(
        name=cfg.cluster.name,
        provider_kind=cfg.cluster.provider,
        kubeconfig=pulumi.Output.secret(""),
        k8s_provider=provider,
        pools=pool_facts(cfg.pools),
        storage_class="standard",
        kubernetes_version=cfg.cluster.kubernetes_version,
    )

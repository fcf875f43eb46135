"""The Gantry program: cluster -> platform -> serving, each layer fed the typed outputs of the last."""

from __future__ import annotations

import pulumi

from infra.cluster import ClusterOutputs
from infra.cluster.factory import create_cluster
from infra.config import GantryConfig


def build(cfg: GantryConfig) -> ClusterOutputs:
    cluster = create_cluster(cfg)
    pulumi.export("cluster", cluster.name)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("pools", {name: p.node_labels for name, p in cluster.pools.items()})
    return cluster

"""Pick the cluster provider named in config; every provider returns the same ClusterOutputs."""

from __future__ import annotations

from typing import assert_never

from gantry.stack import GantryConfig
from infra.cluster import ClusterOutputs
from infra.cluster.eks import EksCluster, EksClusterArgs
from infra.cluster.existing import ExistingCluster, ExistingClusterArgs
from infra.cluster.kind import KindCluster, KindClusterArgs


def create_cluster(cfg: GantryConfig) -> ClusterOutputs:
    """Layer 1: build the configured cluster and return what layers 2 and 3 need."""
    name = cfg.cluster.name
    match cfg.cluster.provider:
        case "kind":
            return KindCluster(name, KindClusterArgs.from_config(cfg)).outputs
        case "eks":
            return EksCluster(name, EksClusterArgs.from_config(cfg)).outputs
        case "existing":
            return ExistingCluster(name, ExistingClusterArgs.from_config(cfg)).outputs
        case other:
            assert_never(other)

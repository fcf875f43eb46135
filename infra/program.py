"""The Gantry program: cluster -> platform -> serving, each layer fed the last's typed outputs."""

from __future__ import annotations

from pathlib import Path

import pulumi

from gantry.service import load_services
from gantry.stack import GantryConfig
from infra.addons import Platform, PlatformArgs
from infra.cluster import ClusterOutputs
from infra.cluster.factory import create_cluster
from infra.serving import Serving, ServingArgs


def build(cfg: GantryConfig, services_dir: Path | None = None) -> ClusterOutputs:
    # A bad service.yaml fails before any resource is registered.
    services = load_services(cfg, services_dir)
    cluster = create_cluster(cfg)
    pulumi.export("cluster", cluster.name)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("pools", {name: p.node_labels for name, p in cluster.pools.items()})
    platform = Platform("platform", PlatformArgs(cluster, cfg.platform))
    pulumi.export("gateway", platform.outputs.gateway)
    serving = Serving("serving", ServingArgs(services, cluster, platform.outputs))
    pulumi.export("services", {name: platform.outputs.host(name) for name in serving.services})
    return cluster

"""Layer 1: the Kubernetes cluster and its node pools (kind, EKS or an existing cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from gantry.pools import PoolScheduling


@dataclass(frozen=True)
class ImageTarget:
    """Where the serving layer's images go: only the cluster knows how its nodes get images."""

    # "kind": `kind load` into the nodes of `kind_cluster`; "registry": `docker push` to
    # `registry`; "local": build only (a cluster that shares this machine's Docker daemon).
    mode: Literal["kind", "registry", "local"]
    kind_cluster: str | None = None
    # "kind": changes whenever the cluster is created anew, so images are loaded into the new
    # nodes (their tags alone do not change when the cluster is replaced).
    cluster_revision: pulumi.Input[str] | None = None
    registry: pulumi.Input[str] | None = None
    # Shell command run before the push that logs Docker in to the registry (e.g. ECR).
    login: pulumi.Input[str] | None = None
    # Set: create an ECR repository per image with this (AWS) provider.
    ecr_provider: pulumi.ProviderResource | None = None
    # `docker build --platform`: the nodes' OS/architecture where it may differ from this
    # machine's (EKS from an arm64 laptop); None builds for this machine (kind, local).
    platform: str | None = None


@dataclass(frozen=True)
class JobStorage:
    """Where the teams' job volumes (`job-storage`, ReadWriteMany: docs/jobs.md) come from."""

    # The StorageClass their claims name. None: the stack names none, which it may only when no
    # team has a jobs quota (gantry/stack.py checks it).
    storage_class: str | None
    # Set (kind): a folder every node shares; the class has no provisioner, so the platform layer
    # creates it and one static PersistentVolume per team on this folder. None: the class
    # provisions volumes itself (EKS: EFS).
    node_path: str | None = None


@dataclass(frozen=True)
class ClusterOutputs:
    """What every provider hands to layers 2 and 3, so they never ask which provider it was."""

    name: str
    # For the platform layer only: its Helm values overlays (platform/<addon>/values-<kind>.yaml)
    # and its default GPU stack (simulated GPUs on kind).
    provider_kind: Literal["kind", "eks", "existing"]
    kubeconfig: pulumi.Output[str]  # secret
    k8s_provider: k8s.Provider
    pools: dict[str, PoolScheduling]
    # StorageClass for persistent volumes (Prometheus): per provider.
    storage_class: str
    # The teams' job volumes: their ReadWriteMany class, on kind with the folder for static ones.
    job_storage: JobStorage
    kubernetes_version: str
    images: ImageTarget
    # What must exist before workloads are applied: depend on these (`depends_on=ready`) so that
    # Helm releases wait for nodes to join and for the cluster's own add-ons. EKS: the fixed node
    # groups, the Pod Identity agent, the EBS storage (CSI driver, gp3 StorageClass) and, where
    # pools use it, Karpenter with its NodePools; kind: the
    # command that creates the cluster; existing: nothing (the cluster is already up).
    ready: list[pulumi.Resource] = field(default_factory=list)

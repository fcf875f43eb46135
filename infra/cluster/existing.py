"""existing provider: a cluster Gantry does not create, reached through a kubeconfig/context.

The stack's pools describe nodes that already exist (their labels and taints must match what
`gantry/pools.py` derives); Gantry registers no cluster resources, only the provider.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from gantry.errors import ConfigError
from gantry.pools import Pool, pool_facts
from gantry.stack import GantryConfig
from infra.cluster import ClusterOutputs, ImageTarget, JobStorage


@dataclass(frozen=True)
class ExistingClusterArgs:
    name: str
    kubernetes_version: str
    pools: tuple[Pool, ...]
    storage_class: str
    kubeconfig: str | None = None  # a path; None: $KUBECONFIG (first entry), else ~/.kube/config
    context: str | None = None
    # The teams' ReadWriteMany job volumes' class (`gantry:platform.job_storage_class`).
    job_storage_class: str | None = None

    @classmethod
    def from_config(cls, cfg: GantryConfig) -> ExistingClusterArgs:
        settings = cfg.cluster.existing
        return cls(
            name=cfg.cluster.name,
            kubernetes_version=cfg.cluster.kubernetes_version,
            pools=tuple(cfg.pools),
            storage_class=settings.storage_class,
            kubeconfig=settings.kubeconfig,
            context=settings.context,
            job_storage_class=cfg.platform.job_storage_class,
        )

    def kubeconfig_path(self) -> Path:
        if self.kubeconfig:
            return Path(self.kubeconfig).expanduser()
        env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        return Path(env).expanduser() if env else Path.home() / ".kube" / "config"


def read_kubeconfig(args: ExistingClusterArgs) -> str:
    path = args.kubeconfig_path()
    try:
        return path.read_text()
    except OSError as err:
        raise ConfigError(
            f"gantry:cluster.existing.kubeconfig: cannot read {path}: {err.strerror}"
        ) from None


class ExistingCluster(pulumi.ComponentResource):
    """A Kubernetes provider for a cluster that already exists; exposes `outputs`."""

    outputs: ClusterOutputs

    def __init__(
        self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:cluster:ExistingCluster", name, None, opts)
        kubeconfig = pulumi.Output.secret(read_kubeconfig(args))
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=kubeconfig,
            context=args.context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.outputs = ClusterOutputs(
            name=args.name,
            provider_kind="existing",
            kubeconfig=kubeconfig,
            k8s_provider=provider,
            pools=pool_facts(list(args.pools)),
            storage_class=args.storage_class,
            job_storage=JobStorage(args.job_storage_class),
            kubernetes_version=args.kubernetes_version,
            # Built into this machine's Docker daemon, which the cluster shares (e.g. Docker
            # Desktop's Kubernetes).
            images=ImageTarget("local"),
        )
        self.register_outputs({"kubeconfig": kubeconfig})

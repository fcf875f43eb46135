"""Layer 2, the platform: Istio, Prometheus stack, custom metrics, Flagger, GPU add-ons, tenancy,
batch jobs (KubeRay and Kueue).

`Platform(name, PlatformArgs(cluster, config))` builds it on any `ClusterOutputs`; the serving
layer reads only `Platform.outputs` (a `PlatformOutputs`). Helm values live in
`platform/<addon>/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

from gantry.stack import PlatformConfig
from gantry.teams import PRIORITY_CLASSES
from infra.addons.autoscaling import Autoscaling, AutoscalingArgs
from infra.addons.batch import Batch, BatchArgs
from infra.addons.delivery import FLAGGER_NAMESPACE, LOADTESTER_URL, Delivery, DeliveryArgs
from infra.addons.gpu import Gpus, GpusArgs
from infra.addons.mesh import (
    GATEWAY_HTTP_PORT,
    GATEWAY_NAME,
    GATEWAY_NAMESPACE,
    GATEWAY_RELEASE,
    Mesh,
    MeshArgs,
)
from infra.addons.metrics import IN_FLIGHT_METRIC
from infra.addons.monitoring import MESH_SCRAPE, PROMETHEUS_URL, Monitoring, MonitoringArgs
from infra.addons.release import ClusterTarget
from infra.addons.tenancy import (
    Priorities,
    TeamTenancy,
    TeamTenancyArgs,
    quota_hard,
)
from infra.cluster import ClusterOutputs


@dataclass(frozen=True)
class TeamNamespace:
    """A team's namespace as the serving layer sees it."""

    namespace: str
    group: str
    pools: tuple[str, ...]  # pools its services may use
    quota: dict[str, str]  # the ResourceQuota's `hard` (requests.cpu, requests.memory, pods, GPUs)


@dataclass(frozen=True)
class PlatformOutputs:
    """What layer 3 needs from layer 2. Plain values, except `depends_on`."""

    # Istio Gateway every VirtualService / Flagger Canary attaches to, as "<namespace>/<name>".
    gateway: str
    gateway_namespace: str
    gateway_name: str
    domain: str  # services answer at <service>.<domain>
    gateway_url: str  # the ingress gateway's in-cluster URL (send Host: <service>.<domain>)
    prometheus_url: str  # in-cluster, for Flagger MetricTemplates and smoke checks
    # Endpoint fields (scheme, tlsConfig) a ServiceMonitor needs to scrape a meshed pod (mTLS
    # STRICT).
    mesh_scrape: dict[str, Any]
    flagger_namespace: str
    loadtester_url: str | None  # Flagger webhook target; None when the load tester is off
    in_flight_metric: str  # custom metric (type Pods) for the HPA: in-flight requests per pod
    priority_classes: tuple[str, ...]  # serving, batch, preemptible (highest first)
    teams: dict[str, TeamNamespace]
    gpu_slices: int  # pods per physical GPU (time-slicing); allocatable GPUs = gpus_per_node * this
    # Resources every serving object must wait for (CRDs, webhooks, adapter, team namespaces).
    depends_on: list[pulumi.Resource] = field(default_factory=list)

    def host(self, service: str) -> str:
        return f"{service}.{self.domain}"


@dataclass(frozen=True)
class PlatformArgs:
    cluster: ClusterOutputs
    config: PlatformConfig  # the stack's `gantry:platform`


def gpu_stack(config: PlatformConfig, provider_kind: str) -> Literal["fake", "nvidia", "none"]:
    if config.gpu_stack != "auto":
        return config.gpu_stack
    return "fake" if provider_kind == "kind" else "nvidia"


class Platform(pulumi.ComponentResource):
    """Everything shared by the model services, on whichever cluster layer 1 made."""

    outputs: PlatformOutputs

    def __init__(
        self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        cluster, config = args.cluster, args.config
        super().__init__(
            "gantry:platform:Platform",
            name,
            None,
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(providers=[cluster.k8s_provider])
            ),
        )
        child = pulumi.ResourceOptions(parent=self)
        kind = cluster.provider_kind
        # No release starts before the cluster has nodes and its own add-ons.
        target = ClusterTarget(kind, tuple(cluster.ready))
        mesh = Mesh("mesh", MeshArgs(target, config.domain), child)
        monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                target,
                cluster.storage_class,
                grafana=config.addons.grafana,
                alertmanager=config.addons.alertmanager,
                mesh_ready=mesh.istiod,
            ),
            child,
        )
        autoscaling = Autoscaling("autoscaling", AutoscalingArgs(target, monitoring.stack), child)
        delivery = Delivery(
            "delivery",
            DeliveryArgs(target, config.addons.loadtester, monitoring.stack, mesh.istiod),
            child,
        )
        gpu_pools = [p for p in cluster.pools.values() if p.is_gpu]
        stack = gpu_stack(config, kind)
        gpus: Gpus | None = None
        if gpu_pools and stack != "none":
            gpus = Gpus(
                "gpus",
                GpusArgs(
                    stack=stack,
                    target=target,
                    gpu_pools=gpu_pools,
                    slices=config.time_slicing_replicas,
                    metrics=config.addons.gpu_metrics,
                    prometheus=monitoring.stack,
                ),
                child,
            )
        priorities = Priorities("priorities", child)
        teams = {
            t.name: TeamTenancy(
                t.name, TeamTenancyArgs(t, config.teams.container_defaults, mesh.base), child
            )
            for t in config.teams.teams
        }
        Batch(
            "batch",
            BatchArgs(
                target=target,
                pools=list(cluster.pools.values()),
                teams=config.teams.teams,
                team_namespaces={name: t.namespace for name, t in teams.items()},
                job_storage=cluster.job_storage,
                prometheus=monitoring.stack,
            ),
            child,
        )
        self.outputs = PlatformOutputs(
            gateway=f"{GATEWAY_NAMESPACE}/{GATEWAY_NAME}",
            gateway_namespace=GATEWAY_NAMESPACE,
            gateway_name=GATEWAY_NAME,
            domain=config.domain,
            gateway_url=(
                f"http://{GATEWAY_RELEASE}.{GATEWAY_NAMESPACE}.svc.cluster.local:{GATEWAY_HTTP_PORT}"
            ),
            prometheus_url=PROMETHEUS_URL,
            mesh_scrape=MESH_SCRAPE,
            flagger_namespace=FLAGGER_NAMESPACE,
            loadtester_url=LOADTESTER_URL if config.addons.loadtester else None,
            in_flight_metric=IN_FLIGHT_METRIC,
            priority_classes=tuple(PRIORITY_CLASSES),
            teams={
                t.name: TeamNamespace(t.name, t.group, tuple(t.pools), quota_hard(t))
                for t in config.teams.teams
            },
            gpu_slices=config.time_slicing_replicas,
            depends_on=[
                mesh.istiod,
                mesh.ingress,
                monitoring.stack,
                autoscaling.adapter,
                delivery.flagger,
                priorities,  # serving pods name a PriorityClass
                *([gpus] if gpus else []),  # GPU pods stay Pending until GPUs are advertised
                *(t.namespace for t in teams.values()),
            ],
        )
        self.register_outputs({"gateway": self.outputs.gateway})

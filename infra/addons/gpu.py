"""GPU add-ons, the one place where kind and EKS really differ.

- fake: run:ai's fake GPU operator advertises simulated `nvidia.com/gpu` on the GPU pools' nodes
  and exports simulated DCGM metrics (kind has no GPUs).
- nvidia: NVIDIA's device plugin (real GPUs; optional time-slicing) and DCGM exporter.
Either way workloads request `nvidia.com/gpu` and dashboards read the same DCGM series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import yaml

from gantry.pools import (
    FAKE_GPU_POOL_LABEL,
    GPU_RESOURCE,
    POOL_KIND_LABEL,
    PoolScheduling,
)
from infra.addons.namespaces import namespace
from infra.addons.release import ClusterTarget, helm_release

GPU_NAMESPACE = "gpu-system"
# What the fake operator simulates: the GPU of the EKS example's g5 nodes (NVIDIA A10G, MiB).
FAKE_GPU_PRODUCT = "NVIDIA-A10G"
FAKE_GPU_MEMORY_MIB = 23028
# The fake operator's simulated DCGM exporter Service, as fake-gpu-operator 0.0.63 renders it
# (templates/status-exporter/service.yaml): only a `prometheus.io/scrape` annotation, which the
# Prometheus operator ignores, so Gantry adds the ServiceMonitor. Checked against the rendered
# chart by infra/checks/monitors.py.
FAKE_DCGM_SERVICE_LABELS = {"app": "nvidia-dcgm-exporter"}
FAKE_DCGM_PORT = "gpu-metrics"


def fake_operator_values(gpu_pools: list[PoolScheduling], slices: int) -> dict[str, Any]:
    """Topology per GPU pool. The operator treats every node that has the `nodePoolLabelKey`
    label as a fake-GPU node, so the key is one only GPU-pool nodes carry (set by kind.py)."""
    return {
        "topology": {
            "nodePoolLabelKey": FAKE_GPU_POOL_LABEL,
            "nodePools": {
                p.name: {
                    "gpuProduct": FAKE_GPU_PRODUCT,
                    # No real time-slicing to simulate: advertise the slices as devices.
                    "gpuCount": p.gpus_per_node * slices,
                    "gpuMemory": FAKE_GPU_MEMORY_MIB,
                }
                for p in gpu_pools
            },
        },
    }


def device_plugin_config(slices: int) -> str:
    """The device plugin's config file; time-slicing shares each GPU among `slices` pods."""
    config: dict[str, Any] = {"version": "v1", "flags": {"migStrategy": "none"}}
    if slices > 1:
        config["sharing"] = {
            "timeSlicing": {"resources": [{"name": GPU_RESOURCE, "replicas": slices}]}
        }
    return yaml.safe_dump(config, sort_keys=False)


def _on_gpu_pools(gpu_pools: list[PoolScheduling]) -> dict[str, Any]:
    """Schedule a node agent on every GPU pool node (pool kind label + all GPU pool taints)."""
    tolerations: list[dict[str, Any]] = []
    for p in gpu_pools:
        tolerations += [t for t in p.tolerations if t not in tolerations]
    # A real affinity term replaces the chart's default one (node-feature-discovery labels, which
    # nodes lack without NFD); a null would depend on every tool passing it on to Helm intact.
    on_gpu_nodes = {"key": POOL_KIND_LABEL, "operator": "In", "values": ["gpu"]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [on_gpu_nodes]}]
            }
        }
    }
    return {"tolerations": tolerations, "affinity": affinity}


@dataclass(frozen=True)
class GpusArgs:
    stack: Literal["fake", "nvidia"]
    target: ClusterTarget
    gpu_pools: list[PoolScheduling]
    slices: int  # pods per physical GPU (time-slicing)
    metrics: bool  # DCGM exporter (nvidia) / the fake operator's ServiceMonitor (fake)
    prometheus: pulumi.Resource  # the ServiceMonitor CRD comes with kube-prometheus-stack


class Gpus(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: GpusArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:platform:Gpus", name, None, opts)
        target, gpu_pools, slices = args.target, args.gpu_pools, args.slices
        # Device plugins mount the kubelet's socket directory (hostPath, privileged).
        ns = namespace(GPU_NAMESPACE, "privileged", pulumi.ResourceOptions(parent=self))
        after = pulumi.ResourceOptions(parent=self, depends_on=[ns, args.prometheus])
        if args.stack == "fake":
            helm_release(
                "fake-gpu-operator",
                "fake-gpu-operator",
                ns.metadata.name,
                target,
                after,
                fake_operator_values(gpu_pools, slices),
            )
            if args.metrics:
                k8s.apiextensions.CustomResource(
                    "fake-dcgm-exporter",
                    api_version="monitoring.coreos.com/v1",
                    kind="ServiceMonitor",
                    metadata={"name": "fake-dcgm-exporter", "namespace": ns.metadata.name},
                    spec={
                        "selector": {"matchLabels": FAKE_DCGM_SERVICE_LABELS},
                        "endpoints": [{"port": FAKE_DCGM_PORT, "interval": "15s"}],
                    },
                    opts=after,  # the ServiceMonitor CRD comes with kube-prometheus-stack
                )
        else:
            helm_release(
                "nvidia-device-plugin",
                "nvidia-device-plugin",
                ns.metadata.name,
                target,
                after,
                {
                    **_on_gpu_pools(gpu_pools),
                    "config": {"map": {"default": device_plugin_config(slices)}},
                },
            )
            if args.metrics:
                helm_release(
                    "dcgm-exporter",
                    "dcgm-exporter",
                    ns.metadata.name,
                    target,
                    after,
                    _on_gpu_pools(gpu_pools),
                )
        self.register_outputs({})

"""Everything later layers need to know about a node pool, derived in one place.

No other module spells a pool label or taint key: node labels and taints for the cluster
providers, and the nodeSelector, tolerations and GPU resource a workload must carry, all come
from `scheduling(pool)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.config import Pool, Taint

# Node label naming the pool a node belongs to; workloads select pools by it.
POOL_LABEL = "gantry.dev/pool"
# Node label with the pool's kind (cpu|gpu), for dashboards and affinity rules.
POOL_KIND_LABEL = "gantry.dev/pool-kind"
# Extended resource a GPU is requested as (NVIDIA device plugin and the fake GPU operator).
GPU_RESOURCE = "nvidia.com/gpu"
# Every GPU pool carries this taint so that only pods asking for GPUs land there.
GPU_TAINT = Taint(key=GPU_RESOURCE, value="present", effect="NoSchedule")
# Node label run:ai's fake GPU operator selects simulated-GPU nodes by; its value names the
# operator's `topology.nodePools` entry, which is the Gantry pool name (kind clusters only).
FAKE_GPU_POOL_LABEL = "run.ai/simulated-gpu-node-pool"


@dataclass(frozen=True)
class PoolScheduling:
    """A pool's scheduling facts, in Kubernetes' own shapes (camelCase dicts)."""

    name: str
    kind: str
    node_labels: dict[str, str]
    taints: list[Taint]
    gpus_per_node: int
    # Allocatable per node: cores, GiB, GPUs.
    cpu: float
    memory_gib: float
    min_nodes: int
    max_nodes: int
    gpu_resource: str | None = GPU_RESOURCE
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_gpu(self) -> bool:
        return self.kind == "gpu"

    def taints_k8s(self) -> list[dict[str, str]]:
        """Taints as the Node API (and EKS/kind configs) spell them."""
        return [_taint_dict(t) for t in self.taints]

    def taints_kubelet(self) -> list[str]:
        """Taints as kubelet's `--register-with-taints` flag spells them."""
        return [
            f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}"
            for t in self.taints
        ]


def _taint_dict(t: Taint) -> dict[str, str]:
    d = {"key": t.key, "effect": t.effect}
    if t.value:
        d["value"] = t.value
    return d


def scheduling(pool: Pool) -> PoolScheduling:
    taints = list(pool.taints)
    if pool.kind == "gpu" and not any(t.key == GPU_TAINT.key for t in taints):
        taints.insert(0, GPU_TAINT)
    labels = {**pool.labels, POOL_LABEL: pool.name, POOL_KIND_LABEL: pool.kind}
    tolerations = [
        {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
        if t.value
        else {"key": t.key, "operator": "Exists", "effect": t.effect}
        for t in taints
    ]
    return PoolScheduling(
        name=pool.name,
        kind=pool.kind,
        node_labels=labels,
        taints=taints,
        gpus_per_node=pool.gpus_per_node,
        cpu=pool.cpu,
        memory_gib=pool.memory_gib,
        min_nodes=pool.min_size,
        max_nodes=pool.max_size,
        gpu_resource=GPU_RESOURCE if pool.kind == "gpu" else None,
        node_selector={POOL_LABEL: pool.name},
        tolerations=tolerations,
    )


def pool_facts(pools: list[Pool]) -> dict[str, PoolScheduling]:
    """Scheduling facts for every pool, by name."""
    return {p.name: scheduling(p) for p in pools}

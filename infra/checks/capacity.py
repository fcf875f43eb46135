"""The cluster's capacity check: every pool holds the worst case of the services placed on it,
plus every team's job quota there.

Counted from what `pulumi up` would apply (the apply set: Gantry's objects and every Helm
release's, infra/checks/apply_set.py), read as the schedulability check reads it:

- a service's pods: HPA maxReplicas, plus the Flagger canary at minReplicas, plus the
  Deployment's maxSurge (`workloads`: why each counts), each with its requests and the Istio
  sidecar's (`pod_requests`);
- a pool's nodes: max_size where a provisioner adds nodes (Karpenter), desired_size where the
  pool is a fixed group (`managed`: kind, which has no node provisioner, and fixed EKS groups);
- a node's room: the pool's allocatable (GPUs x time-slicing replicas) minus the requests of
  every DaemonSet that lands on it (its selector, affinity and tolerations);
- the teams' job quotas (platform/teams.yaml `jobs.quota`, gantry.capacity.job_demands): held
  for admitted jobs on their pools, so a job Kueue admits finds room without taking a serving
  replica's (borrowing moves quota between teams, never beyond the sum).

The sums and the one-line messages are gantry/capacity.py's. System add-ons other than
DaemonSets (Prometheus, istiod, Flagger) are not counted: they have no pool of their own
(docs/limitations.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from gantry import capacity
from gantry.pools import GPU_RESOURCE, PoolScheduling, autoscaling_of, pool_facts
from gantry.stack import GantryConfig
from infra.checks.schedulability import lands_on, workloads
from infra.serving.manifests import SERVICE_LABEL

_GIB = Decimal(1024**3)
# Labels the kubelet puts on every node, which charts' DaemonSets select on besides the pool's
# own (Gantry's pools are Linux on x86-64: EKS's AMIs and kind's node image).
WELL_KNOWN_NODE_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
# Labels a GPU node gets at runtime, which the GPU DaemonSets select on: the GPU operator's
# convention, which run:ai's fake operator follows on kind (its device plugin and DCGM exporter).
GPU_NODE_LABELS = {
    "nvidia.com/gpu.deploy.device-plugin": "true",
    "nvidia.com/gpu.deploy.dcgm-exporter": "true",
}


def _per_pod(requests: Mapping[str, Decimal]) -> dict[str, float]:
    """Pod requests (Kubernetes units) in gantry.capacity's: cores, GiB, GPUs."""
    return {
        "cpu": float(requests.get("cpu", 0)),
        "memory_gib": float(requests.get("memory", 0) / _GIB),
        "gpus": float(requests.get(GPU_RESOURCE, 0)),
    }


def _is_service(o: Mapping[str, Any]) -> bool:
    """A model service's Deployment (its pods carry the service label)."""
    meta = ((o.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return o["kind"] == "Deployment" and SERVICE_LABEL in (meta.get("labels") or {})


def demands(
    objects: Iterable[Mapping[str, Any]], pools: Mapping[str, PoolScheduling]
) -> list[capacity.Demand]:
    """Each model service's worst case on the pool its pods land on."""
    objects = list(objects)
    services = {
        (o["metadata"].get("namespace", "default"), o["metadata"]["name"])
        for o in objects
        if _is_service(o)
    }
    found = []
    for w in workloads(objects):
        pool = next((p for p in pools.values() if lands_on(w.pod, p)), None)
        # A pod no pool takes is the schedulability check's to name.
        if (w.namespace, w.name) not in services or pool is None:
            continue
        found.append(
            capacity.Demand(
                service=w.service,
                pool=pool.name,
                per_pod=_per_pod(w.requests),
                max_pods=w.max_pods,
                canary=w.canary,
                surge=w.surge,
                min_pods=w.min_pods,
                max_key=f"{w.service} autoscaling.max_replicas",
            )
        )
    return found


def supplies(objects: Iterable[Mapping[str, Any]], cfg: GantryConfig) -> list[capacity.PoolSupply]:
    """What each pool offers: nodes at most, each node's allocatable less its DaemonSets."""
    daemons = [w for w in workloads(objects) if w.kind == "DaemonSet"]
    slices = cfg.platform.time_slicing_replicas
    out = []
    for i, (pool, facts) in enumerate(zip(cfg.pools, pool_facts(cfg.pools).values(), strict=True)):
        # Nothing adds nodes to a managed (fixed) pool: it holds what it was created with.
        fixed = autoscaling_of(pool, cfg.cluster.provider) == "managed"
        runtime = {**WELL_KNOWN_NODE_LABELS, **(GPU_NODE_LABELS if facts.is_gpu else {})}
        node = replace(facts, node_labels={**runtime, **facts.node_labels})
        overhead = {r: 0.0 for r in capacity.UNITS}
        for d in daemons:
            if lands_on(d.pod, node):
                for r, v in _per_pod(d.requests).items():
                    overhead[r] += v
        allocatable = {
            "gpus": float(pool.gpus_per_node * slices),
            "cpu": pool.cpu,
            "memory_gib": pool.memory_gib,
        }
        key = f"gantry:pools[{i}]"
        out.append(
            capacity.PoolSupply(
                pool=pool.name,
                nodes=pool.desired if fixed else pool.max_size,
                per_node={r: max(0.0, v - overhead[r]) for r, v in allocatable.items()},
                size_key=f"{key}.desired_size (and max_size)" if fixed else f"{key}.max_size",
                overhead=overhead,
            )
        )
    return out


def capacity_problems(objects: Iterable[Mapping[str, Any]], cfg: GantryConfig) -> list[str]:
    """One line per pool that cannot hold its services' worst case and the teams' job quotas
    (empty: all fit)."""
    objects = list(objects)
    pools = pool_facts(cfg.pools)
    jobs = capacity.job_demands(cfg.platform.teams.teams, cfg.platform.teams_file)
    return capacity.problems(
        capacity.check(supplies(objects, cfg), [*demands(objects, pools), *jobs])
    )

"""Right-sizing a service from what one replica was measured to sustain (`gantry capacity`).

Input: the rate one replica sustained within the service's SLO and its median latency there
(measured from a load-test report by loadtests/sustained.py), the service as the target stack
defines it, the pool it runs on and that pool's node price. Output, all in the stack's units:

- `target_in_flight` (per Serve replica), by Little's law: in flight = rate x time in system.
  The timeline records p50, not the mean; latency is right-skewed (mean >= median), so p50
  gives the lower concurrency: the autoscaler aims a little below the measured operating point
  and scales out a little early, the safe side of an SLO. Rounded down to TARGET_STEP.
- `max_replicas` (pods: the HPA's unit) for a stated peak: ceil(peak x (1 + HEADROOM) / rate
  per pod), never below `min_replicas`.
- nodes: pods per node from the pod's requests (+ the Istio sidecar) against a node's
  allocatable CPU, memory and GPUs (x time-slicing); DaemonSets, a canary pod and the rolling
  update's surge come on top (the capacity check of `gantry preview` counts those).
- cost: nodes x the pool's on-demand price x HOURS_PER_MONTH, at max_replicas and at
  min_replicas: the range the service's own nodes cost while it scales between them.

Pure: no I/O; the CLI reads the config once and passes typed values in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from gantry.errors import ConfigError
from gantry.pools import Pool
from gantry.prices import HOURS_PER_MONTH
from gantry.service import ServiceSpec
from gantry.stack import ServiceEntry
from gantry.validation import NAMESPACE, deep_merge

# Capacity max_replicas holds above the stated peak, as a fraction of the peak rate (0.20 =
# 20 %): bursts above the peak, a replica lost or restarting, load arriving while a scale-out is
# still starting pods.
HEADROOM = 0.20
# target_in_flight is rounded down to a multiple of this (in-flight requests per Serve replica).
TARGET_STEP = 0.1

# What the load test's timeline counted as one replica: the sandbox counts Serve replicas, a
# cluster's observer counts ready pods (each runs `replicas_per_pod` Serve replicas).
ReplicaUnit = Literal["serve-replica", "pod"]


@dataclass(frozen=True)
class Sustained:
    """What one replica sustained within the SLO in a load test."""

    rps: float  # requests/s answered per counted replica
    p50_ms: float  # median latency at that rate (sliding window), ms
    unit: ReplicaUnit


@dataclass(frozen=True)
class Proposal:
    """The sizing of one service for a peak; rates in requests/s, money in USD."""

    rps_per_serve_replica: float
    rps_per_pod: float
    in_flight: float  # per Serve replica at the sustained rate (Little's law)
    target_in_flight: float
    peak_rps: float
    headroom: float  # fraction of the peak
    max_replicas: int  # pods
    min_replicas: int  # pods, unchanged
    pods_per_node: int
    nodes_at_max: int
    nodes_at_min: int
    gpus_at_max: int  # GPUs (or time-sliced GPU shares) the pods request at max_replicas
    usd_per_hour: float  # one node
    usd_per_month_at_max: float
    usd_per_month_at_min: float
    # The service's values in the stack now, for comparison.
    now_target_in_flight: float
    now_max_replicas: int
    now_nodes_at_max: int
    now_usd_per_month_at_max: float

    @property
    def sized_rps(self) -> float:
        return self.peak_rps * (1 + self.headroom)


def _ceil(x: float) -> int:
    # Rounded first so that float noise (600.0000000001) does not add a replica.
    return math.ceil(round(x, 9))


def _floor(x: float) -> int:
    return math.floor(round(x, 9))


def pods_per_node(spec: ServiceSpec, pool: Pool, gpu_slices: int = 1) -> int:
    """How many of the service's pods (with their sidecar) fit one node of `pool`."""
    res, car = spec.resources, spec.sidecar
    fits = [
        _floor(pool.cpu / (res.cpu + car.cpu)),
        _floor(pool.memory_gib / (res.memory_gib + car.memory_mib / 1024)),
    ]
    if res.gpus:
        fits.append(pool.gpus_per_node * gpu_slices // res.gpus)
    if min(fits) < 1:
        raise ConfigError(
            f"a {spec.name} pod ({res.cpu + car.cpu:g} CPU, "
            f"{res.memory_gib + car.memory_mib / 1024:g} GiB, {res.gpus} GPU with its sidecar) "
            f"does not fit a node of pool {pool.name} ({pool.cpu:g} CPU, {pool.memory_gib:g} GiB, "
            f"{pool.gpus_per_node * gpu_slices} GPU allocatable)"
        )
    return min(fits)


def propose(
    sustained: Sustained,
    spec: ServiceSpec,
    pool: Pool,
    *,
    peak_rps: float,
    usd_per_hour: float,
    gpu_slices: int = 1,
    headroom: float = HEADROOM,
) -> Proposal:
    """Size `spec` on `pool` for `peak_rps` from what one replica sustained."""
    per_pod = spec.replicas_per_pod
    if sustained.unit == "pod":
        rps_pod, rps_replica = sustained.rps, sustained.rps / per_pod
    else:
        rps_pod, rps_replica = sustained.rps * per_pod, sustained.rps
    in_flight = rps_replica * sustained.p50_ms / 1000
    target = max(_floor(in_flight / TARGET_STEP), 1) * TARGET_STEP
    min_replicas = spec.autoscaling.min_replicas
    max_replicas = max(_ceil(peak_rps * (1 + headroom) / rps_pod), min_replicas)
    fit = pods_per_node(spec, pool, gpu_slices)
    now_max = spec.autoscaling.max_replicas
    nodes_max, nodes_min, nodes_now = (
        _ceil(n / fit) for n in (max_replicas, min_replicas, now_max)
    )
    return Proposal(
        rps_per_serve_replica=rps_replica,
        rps_per_pod=rps_pod,
        in_flight=in_flight,
        target_in_flight=round(target, 1),
        peak_rps=peak_rps,
        headroom=headroom,
        max_replicas=max_replicas,
        min_replicas=min_replicas,
        pods_per_node=fit,
        nodes_at_max=nodes_max,
        nodes_at_min=nodes_min,
        gpus_at_max=max_replicas * spec.resources.gpus,
        usd_per_hour=usd_per_hour,
        usd_per_month_at_max=nodes_max * usd_per_hour * HOURS_PER_MONTH,
        usd_per_month_at_min=nodes_min * usd_per_hour * HOURS_PER_MONTH,
        now_target_in_flight=spec.autoscaling.target_in_flight,
        now_max_replicas=now_max,
        now_nodes_at_max=nodes_now,
        now_usd_per_month_at_max=nodes_now * usd_per_hour * HOURS_PER_MONTH,
    )


def stack_override(name: str, entry: ServiceEntry, proposal: Proposal) -> dict[str, Any]:
    """The service's whole `gantry:services.<name>` entry with the proposal merged into its
    overrides, as a stack file holds it: it replaces that entry in `Pulumi.<stack>.yaml`."""
    autoscaling = {
        "target_in_flight": proposal.target_in_flight,
        "max_replicas": proposal.max_replicas,
    }
    out: dict[str, Any] = entry.model_dump(exclude_defaults=True, exclude={"overrides"})
    out["overrides"] = deep_merge(entry.overrides, {"autoscaling": autoscaling})
    return {"config": {f"{NAMESPACE}:services": {name: out}}}

"""Pool capacity: can each pool hold the worst case of what is placed on it?

Engine-neutral arithmetic; each engine says what it counts (infra/checks/capacity.py for the
cluster, sandbox/capacity.py for the sandbox) and hands in typed values:

- a `Demand` per service and pool: what one pod (or Serve replica) requests and how many may
  run at once: the autoscaler's maximum, plus a canary pod set beside it, plus the rolling
  update's surge (each engine's rule is in its module);
- a `PoolSupply` per pool: its nodes at most and what each node has left for them.

`check(supplies, demands)` sums per pool and resource and returns a `PoolCapacity` each; a
short one's `problem()` is one line naming the numbers and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gantry.teams import Team

# The resources compared, with their units (all per pod, per node or per pool as named).
UNITS = {"gpus": "GPU", "cpu": "CPU", "memory_gib": "GiB memory"}
# Rounding slack for sums of float requests (0.1 + 0.2 cores): a shortfall below it is none.
EPSILON = 1e-9


@dataclass(frozen=True)
class Demand:
    """One service's pods on one pool at their worst case, all at once."""

    service: str
    pool: str
    per_pod: Mapping[str, float]  # requests of one pod (sidecar included): UNITS' keys
    max_pods: int  # the autoscaler's maximum
    canary: int  # canary pods running beside them during a rollout
    surge: int  # extra pods of a rolling update
    min_pods: int = 1  # the autoscaler's minimum: the fix never suggests a max below it
    max_key: str = ""  # the config key of max_pods, for the fix
    reserved: bool = False  # a team's job quota (`job_demands`), not a service's pods

    @property
    def pods(self) -> int:
        return self.max_pods + self.canary + self.surge

    def total(self, resource: str) -> float:
        return self.pods * self.per_pod.get(resource, 0.0)

    def describe(self) -> str:
        if self.reserved:
            return f"{self.service}"
        return f"{self.service} ({self.max_pods} max + {self.canary} canary + {self.surge} surge)"


@dataclass(frozen=True)
class PoolSupply:
    """What a pool can offer: `nodes` at most, each with `per_node` left after what runs on
    every node (DaemonSets). `size_key` is the config key of the node count (None: fixed, then
    `node_keys` name the per-node keys to raise instead)."""

    pool: str
    nodes: int
    per_node: Mapping[str, float]
    size_key: str | None
    node_keys: Mapping[str, str] = field(default_factory=dict)
    overhead: Mapping[str, float] = field(default_factory=dict)  # per node, for the message


@dataclass(frozen=True)
class PoolCapacity:
    """One pool's worst case against what it can hold, per resource."""

    supply: PoolSupply
    demands: tuple[Demand, ...]

    @property
    def pool(self) -> str:
        return self.supply.pool

    @property
    def needed(self) -> dict[str, float]:
        return {r: sum(d.total(r) for d in self.demands) for r in self._resources}

    @property
    def available(self) -> dict[str, float]:
        return {r: self.supply.nodes * self.supply.per_node.get(r, 0.0) for r in self._resources}

    @property
    def _resources(self) -> list[str]:
        # Only what is asked for, or what the pool has: a cpu pool shows no "0 GPU".
        return [
            r
            for r in UNITS
            if any(d.per_pod.get(r) for d in self.demands) or self.supply.per_node.get(r)
        ]

    @property
    def short(self) -> list[str]:
        """The resources the pool lacks, in UNITS order."""
        have = self.available
        return [r for r, need in self.needed.items() if need > have[r] + EPSILON]

    def problem(self) -> str | None:
        """One line: pool, needed vs available per short resource, the counted pods, the fix."""
        short = self.short
        if not short:
            return None
        need, have = self.needed, self.available
        numbers = ", ".join(
            f"needs {_amount(r, need[r])}, has {_amount(r, have[r])}" for r in short
        )
        s = self.supply
        per_node = ", ".join(_amount(r, v) for r, v in s.per_node.items() if r in need)
        after = " after DaemonSets" if any(s.overhead.values()) else ""
        counted = "; ".join(d.describe() for d in self.demands if any(d.total(r) for r in short))
        return (
            f"pool {self.pool}: {numbers} ({s.nodes} node(s) x {per_node}{after}; "
            f"worst case: {counted}); fix: {', or '.join(self.fixes())}"
        )

    def fixes(self) -> list[str]:
        """Raise the node count (or a fixed pool's per-node resources) to fit; or lower the
        largest service's max_replicas where that alone would fit."""
        s, need, short = self.supply, self.needed, self.short
        out = []
        if s.size_key is not None:
            per_node = [s.per_node.get(r, 0.0) for r in short]
            if all(per_node):
                nodes = max(math.ceil(need[r] / s.per_node[r] - EPSILON) for r in short)
                out.append(f"raise {s.size_key} to {nodes}")
        else:
            for r in short:
                if r in s.node_keys and s.nodes:
                    per = need[r] / s.nodes + s.overhead.get(r, 0.0)
                    # Rounded up to a tenth (cores): enough, and a value one would write.
                    out.append(
                        f"raise {s.node_keys[r]} to {_num(math.ceil(per * 10 - EPSILON) / 10)}"
                    )
        out += self._lower_max(short)
        return out or ["move services to another pool"]

    def _lower_max(self, short: list[str]) -> list[str]:
        have, need = self.available, self.needed
        for d in sorted(self.demands, key=lambda d: -max(d.total(r) for r in short)):
            if not d.max_key or not all(d.per_pod.get(r) for r in short):
                continue
            if d.reserved:  # a quota: lowering it fits when it is larger than the shortfall
                left = {r: d.total(r) - (need[r] - have[r]) for r in short}
                if all(v >= -EPSILON for v in left.values()):
                    to = ", ".join(f"{r} {_num(max(v, 0))}" for r, v in left.items())
                    return [f"lower {d.max_key} to {to}"]
                continue
            over = max(math.ceil((need[r] - have[r]) / d.per_pod[r] - EPSILON) for r in short)
            fits = d.max_pods - over
            if fits >= d.min_pods:
                return [f"lower {d.max_key} to {fits}"]
        return []


def job_demands(teams: Iterable[Team], teams_file: str) -> list[Demand]:
    """Every team's job quota per pool, held for its jobs beside the services' worst case: a
    job admitted within quota then always finds room, and never takes a serving replica's."""
    return [
        Demand(
            service=f"{team.name} jobs quota",
            pool=pool,
            per_pod=quota.model_dump(),
            max_pods=1,
            canary=0,
            surge=0,
            max_key=f"{teams_file}: teams[{i}] ({team.name}).jobs.quota.{pool}",
            reserved=True,
        )
        for i, team in enumerate(teams)
        for pool, quota in team.jobs.quota.items()
    ]


def check(supplies: Iterable[PoolSupply], demands: Iterable[Demand]) -> list[PoolCapacity]:
    """Every pool's capacity against the demands placed on it, in pool order."""
    demands = list(demands)
    return [PoolCapacity(s, tuple(d for d in demands if d.pool == s.pool)) for s in supplies]


def problems(capacities: Iterable[PoolCapacity]) -> list[str]:
    """One line per pool that cannot hold its worst case."""
    return [p for c in capacities if (p := c.problem()) is not None]


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _amount(resource: str, value: float) -> str:
    return f"{_num(value)} {UNITS[resource]}"

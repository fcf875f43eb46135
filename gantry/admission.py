"""Which queued job runs next: Kueue's admission rule as a pure function.

The cluster runs Kueue itself (infra/addons/batch.py renders its ClusterQueues); the sandbox's
job queue (sandbox/jobs/) calls `decide` on every tick, so a job waits, borrows and is preempted
for the same reasons in both places. What is modelled, with Kueue's settings as Gantry renders
them:

- one ClusterQueue per team with a nominal quota per pool (flavor), all teams in one cohort;
- `queueingStrategy: BestEffortFIFO`: higher priority first, then the earliest queued; a job
  that does not fit does not hold back smaller ones behind it;
- borrowing: a team with `borrowing: true` may use what the cohort's other teams leave idle
  (the cohort's nominal minus its usage);
- `preemption.reclaimWithinCohort: Any`: a job that fits its team's own nominal quota takes it
  back from teams that borrowed it, preempting their jobs (most recently admitted first);
- `preemption.withinClusterQueue: LowerPriority`: a job preempts its own team's lower-priority
  jobs; `borrowWithinCohort: Never`: nobody preempts to borrow;
- a preempted job is queued again behind the others (Kueue's requeuing by eviction time).

Amounts are in the teams file's units (cores, GiB, GPUs); pools are Kueue's flavors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gantry.jobs import RESOURCES
from gantry.teams import TeamsFile

# Rounding slack for sums of fractional cores.
EPSILON = 1e-9

Amounts = Mapping[str, Mapping[str, float]]  # pool -> resource -> amount


@dataclass(frozen=True)
class Queue:
    """A team's ClusterQueue."""

    team: str
    nominal: Amounts
    borrowing: bool = True


@dataclass(frozen=True)
class Workload:
    """A job as admission sees it."""

    name: str
    team: str
    priority: int  # WorkloadPriorityClass value: higher first
    requests: Amounts  # summed per pool (gantry.jobs.requests_by_pool)
    queued_at: float  # s; order among equal priorities (earliest first)
    admitted: bool = False
    admitted_at: float = 0.0  # s; the most recently admitted is preempted first


@dataclass
class Decision:
    admit: list[str] = field(default_factory=list)
    preempt: dict[str, str] = field(default_factory=dict)  # victim -> why (which job, what)
    waiting: dict[str, str] = field(default_factory=dict)  # queued job -> why it waits


def queues_from_teams(teams: TeamsFile) -> dict[str, Queue]:
    """Every team's queue, from its `jobs` block in the teams file."""
    return {
        t.name: Queue(
            t.name, {p: q.model_dump() for p, q in t.jobs.quota.items()}, t.jobs.borrowing
        )
        for t in teams.teams
    }


class _Usage:
    """What admitted workloads hold, per team and pool."""

    def __init__(self, queues: Mapping[str, Queue], admitted: Iterable[Workload]) -> None:
        self.queues = queues
        self.by_team: dict[str, dict[str, dict[str, float]]] = {t: {} for t in queues}
        for w in admitted:
            self.add(w, 1)

    def add(self, w: Workload, sign: int) -> None:
        team = self.by_team.setdefault(w.team, {})
        for pool, req in w.requests.items():
            held = team.setdefault(pool, dict.fromkeys(RESOURCES, 0.0))
            for r, v in req.items():
                held[r] += sign * v

    def used(self, team: str, pool: str, r: str) -> float:
        return self.by_team.get(team, {}).get(pool, {}).get(r, 0.0)

    def nominal(self, team: str, pool: str, r: str) -> float:
        q = self.queues.get(team)
        return (q.nominal.get(pool) or {}).get(r, 0.0) if q else 0.0

    def cohort(self, pool: str, r: str) -> tuple[float, float]:
        """The cohort's (nominal, used) of one resource of one pool."""
        return (
            sum(self.nominal(t, pool, r) for t in self.queues),
            sum(self.used(t, pool, r) for t in self.by_team),
        )

    def borrowing(self, team: str, pool: str) -> bool:
        return any(
            self.used(team, pool, r) > self.nominal(team, pool, r) + EPSILON for r in RESOURCES
        )

    def within_nominal(self, w: Workload) -> bool:
        return all(
            self.used(w.team, pool, r) + v <= self.nominal(w.team, pool, r) + EPSILON
            for pool, req in w.requests.items()
            for r, v in req.items()
            if v
        )

    def shortfall(self, w: Workload) -> str | None:
        """Why `w` does not fit now (None: it fits): the first resource short."""
        may_borrow = self.queues[w.team].borrowing if w.team in self.queues else False
        for pool, req in w.requests.items():
            for r, v in req.items():
                if not v:
                    continue
                used, nominal = self.used(w.team, pool, r), self.nominal(w.team, pool, r)
                total, cohort_used = self.cohort(pool, r)
                if not may_borrow and used + v > nominal + EPSILON:
                    return (
                        f"team {w.team} on pool {pool}: needs {_n(v)} {r}, "
                        f"{_n(max(nominal - used, 0))} of its {_n(nominal)} left (no borrowing)"
                    )
                if cohort_used + v > total + EPSILON:
                    return (
                        f"pool {pool}: needs {_n(v)} {r}; team {w.team} has "
                        f"{_n(max(nominal - used, 0))} of its {_n(nominal)} left, the cohort "
                        f"{_n(max(total - cohort_used, 0))} of {_n(total)}"
                    )
        return None


def decide(queues: Mapping[str, Queue], workloads: Iterable[Workload]) -> Decision:
    """One admission cycle over every workload: which queued ones to admit, which admitted
    ones to preempt for them, and why the rest wait."""
    workloads = list(workloads)
    admitted = [w for w in workloads if w.admitted]
    usage = _Usage(queues, admitted)
    out = Decision()
    preempted: set[str] = set()
    for w in sorted(
        (w for w in workloads if not w.admitted), key=lambda w: (-w.priority, w.queued_at)
    ):
        if w.team not in queues:
            out.waiting[w.name] = f"team {w.team} has no queue"
            continue
        why = usage.shortfall(w)
        if why is None:
            out.admit.append(w.name)
            usage.add(w, 1)
            continue
        victims = _victims(w, [a for a in admitted if a.name not in preempted], usage)
        if victims is None:
            out.waiting[w.name] = f"waiting for quota: {why}"
            continue
        for v in victims:
            reason = "reclaimed by its owner" if v.team != w.team else "higher priority"
            out.preempt[v.name] = f"preempted for {w.name} ({reason})"
            preempted.add(v.name)
            usage.add(v, -1)
        # The preemptor holds what it freed until the victims are gone (next cycles).
        usage.add(w, 1)
        out.waiting[w.name] = "preempting " + ", ".join(v.name for v in victims)
    return out


def _victims(w: Workload, admitted: list[Workload], usage: _Usage) -> list[Workload] | None:
    """The fewest admitted workloads whose preemption lets `w` in, or None.

    Candidates: other teams' jobs on a pool they borrow on, when `w` fits its own team's
    nominal quota (reclaim); and `w`'s own team's lower-priority jobs. Other teams' borrowers
    first, then the lowest priority, then the most recently admitted."""
    pools = set(w.requests)
    reclaim = usage.within_nominal(w)
    candidates = [
        a
        for a in admitted
        if (a.team == w.team and a.priority < w.priority)
        or (
            reclaim
            and a.team != w.team
            and any(p in pools and usage.borrowing(a.team, p) for p in a.requests)
        )
    ]
    candidates.sort(key=lambda a: (a.team == w.team, a.priority, -a.admitted_at))
    chosen: list[Workload] = []
    for a in candidates:
        # Take from another team only while it still borrows on a pool `w` needs.
        if a.team != w.team and not any(usage.borrowing(a.team, p) for p in pools):
            continue
        usage.add(a, -1)
        chosen.append(a)
        if usage.shortfall(w) is None:
            for c in chosen:
                usage.add(c, 1)  # the caller removes them for good
            return chosen
    for c in chosen:
        usage.add(c, 1)
    return None


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")

"""What one replica sustains within its SLO, measured from a load-test report folder.

The method, on the per-second timeline (`timeline.jsonl`: users, requests/s, failed/s, p50 and
p99 over the sliding latency window, ready replicas per version):

1. Steady seconds: the user count and the replica count (all versions) have not changed for
   `steady_s` seconds (STEADY_S, or twice the scenario's latency window if longer), so the
   window's percentiles describe this load on these replicas only, and a new replica has
   warmed up. Seconds without load or replica data are skipped, not counted as a change.
2. Within the SLO: p99 < `slo.p99_latency_ms` and failures within `slo.success_rate_percent`.
3. Plateaus: steady seconds with the same users and replicas since the same change. A
   plateau's rate per replica = mean answered requests/s (requests - failures) over its
   seconds within the SLO / replicas; it counts with at least MIN_SECONDS such seconds, since
   one second holds only a few requests at low rates.
4. Sustained = the plateau with the highest rate per replica; its mean p50 is the latency
   Little's law uses (gantry/rightsizing.py says why p50).
5. The bound: the lowest rate per replica of a steady plateau that went over the SLO, when it
   lies at or above the sustained rate. Without one the test never pushed a replica past its
   SLO, and the sustained rate is a lower bound: step to more users to find the limit.

Assumptions: load spreads evenly over the replicas (the ingress balances per request); the
run's hardware is the target's (a sandbox replica on a shared CPU is not an A10G pod); the
payload mix is the production one. A step run gives two or three plateaus, i.e. few data
points: the table says how many seconds the number rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from gantry.errors import ConfigError
from gantry.rightsizing import ReplicaUnit, Sustained
from gantry.service import Slo
from gantry.validation import format_error
from loadtests.expectations import reference_points
from loadtests.scenario import ScenarioError, load_scenario
from loadtests.timeline import Sample, read_timeline

# Seconds users and replicas must stay unchanged before a second counts (s): twice the default
# 5-s latency window, so the p50/p99 of the window hold no second of the previous load.
STEADY_S = 10
# Fewest seconds within the SLO a plateau needs before its rate counts (s).
MIN_SECONDS = 10
SUMMARY, TIMELINE = "summary.json", "timeline.jsonl"


class ReportError(ConfigError):
    """A report folder `gantry capacity` cannot measure from; the message names what is wrong."""


class ReportHead(BaseModel):
    """The fields of `summary.json` (loadtests/report.py `Summary`, which loads matplotlib)
    that sizing reads."""

    model_config = ConfigDict(extra="ignore")

    scenario: str
    service: str
    observer: str


@dataclass(frozen=True)
class Report:
    folder: Path
    head: ReportHead
    samples: list[Sample]

    @property
    def unit(self) -> ReplicaUnit:
        return "pod" if self.head.observer.startswith("kubernetes") else "serve-replica"


@dataclass(frozen=True)
class Plateau:
    users: int
    replicas: int
    start: int  # t of its first steady second
    seconds: int  # steady seconds
    within: int  # of those, within the SLO
    over: int  # of those, over it (p99 at or above the bound, or too many failures)
    rps: float  # mean answered requests/s over the seconds within the SLO (0 if none)
    offered_rps: float  # mean requests/s over every steady second
    p50_ms: float  # mean p50 over the seconds within the SLO (0 if none)
    p99_max_ms: float | None  # highest p99 over the seconds within the SLO

    @property
    def rps_per_replica(self) -> float:
        return self.rps / self.replicas

    @property
    def offered_rps_per_replica(self) -> float:
        return self.offered_rps / self.replicas


@dataclass(frozen=True)
class Measurement:
    sustained: Sustained
    plateau: Plateau  # the one the rate comes from
    plateaus: list[Plateau]
    bound_rps: float | None  # per replica: the lowest over-SLO rate above the sustained one
    steady_s: int


def read_report(folder: Path) -> Report:
    """The report's summary and timeline; a missing or unreadable one is a `ReportError`."""
    if not folder.is_dir():
        raise ReportError(f"report folder {folder} does not exist")
    for name in (SUMMARY, TIMELINE):
        if not (folder / name).is_file():
            raise ReportError(
                f"{folder} has no {name}: not a `gantry loadtest` report folder",
                "pass the folder a run wrote (default .gantry/loadtests/<scenario>-<time>/)",
            )
    try:
        head = ReportHead.model_validate_json((folder / SUMMARY).read_text())
    except ValidationError as err:
        raise ReportError(format_error(err, prefix=str(folder / SUMMARY))) from None
    try:
        samples = read_timeline(folder / TIMELINE)
    except ValueError as err:  # not JSON, or not a Sample
        first = str(err).splitlines()[0]
        raise ReportError(f"{folder / TIMELINE}: not a timeline: {first}") from None
    return Report(folder, head, samples)


def steady_seconds(report: Report) -> int:
    """STEADY_S, or twice the run's latency window when its scenario (by name) has a longer one."""
    try:
        window = load_scenario(report.head.scenario).latency_window_s
    except ScenarioError:
        return STEADY_S
    return max(STEADY_S, int(2 * window))


def _plateaus(samples: list[Sample], slo: Slo, steady_s: int) -> list[Plateau]:
    allowed_fail = 1 - slo.success_rate_percent / 100
    groups: dict[int, list[Sample]] = {}
    key: tuple[int, int] | None = None
    since = 0
    for s in samples:
        replicas = s.total_replicas
        if not s.users or not replicas or s.rps is None:
            continue  # no load, or a gap in the data
        if (s.users, replicas) != key:
            key, since = (s.users, replicas), s.t
        if s.t - since >= steady_s:
            groups.setdefault(since, []).append(s)
    out = []
    for group in groups.values():
        timed = [s for s in group if s.p99_ms is not None]
        ok = [
            s
            for s in timed
            if (s.p99_ms or 0) < slo.p99_latency_ms
            and (s.fail_rps or 0) <= (s.rps or 0) * allowed_fail
        ]
        out.append(
            Plateau(
                users=group[0].users or 0,
                replicas=group[0].total_replicas or 0,
                start=group[0].t,
                seconds=len(group),
                within=len(ok),
                over=len(timed) - len(ok),
                rps=_mean([(s.rps or 0) - (s.fail_rps or 0) for s in ok]),
                offered_rps=_mean([s.rps or 0 for s in group]),
                p50_ms=_mean([s.p50_ms or 0 for s in ok]),
                p99_max_ms=max((s.p99_ms or 0 for s in ok), default=None),
            )
        )
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def measure(report: Report, slo: Slo, steady_s: int = STEADY_S) -> Measurement:
    """What one replica sustained within `slo` in `report` (the method: this module's doc)."""
    samples, where = report.samples, report.folder
    loaded = [s for s in samples if s.users]
    if not loaded:
        raise ReportError(f"{where}: the timeline has no second with users running")
    if reference_points(samples).rise == loaded[0].t:
        raise ReportError(
            f"{where}: a run whose user count never rises (scenario {report.head.scenario!r}, "
            "a soak): capacity needs a step or ramp run",
            "run `gantry loadtest step` (or ramp) and pass its report folder",
        )
    if not any(s.total_replicas for s in samples):
        raise ReportError(
            f"{where}: the timeline has no replica counts (observer: {report.head.observer})",
            "rerun where the observer can count replicas: the sandbox or a cluster",
        )
    plateaus = _plateaus(samples, slo, steady_s)
    usable = [p for p in plateaus if p.within >= MIN_SECONDS and p.rps > 0]
    if not usable:
        steady = sum(p.seconds for p in plateaus)
        within = sum(p.within for p in plateaus)
        no_p99 = sum(1 for s in samples if s.users and s.p99_ms is None)
        raise ReportError(
            f"{where}: no {MIN_SECONDS} steady seconds within the SLO at one load "
            f"(p99 < {slo.p99_latency_ms:g} ms): {steady} steady seconds "
            f"(users and replicas unchanged for {steady_s} s), {within} of them within the SLO; "
            f"{no_p99} loaded seconds have no p99",
            "run a longer step or ramp, or one whose load a replica can serve within its SLO",
        )
    best = max(usable, key=lambda p: p.rps_per_replica)
    over = [
        p.offered_rps_per_replica
        for p in plateaus
        if p.over and p.offered_rps_per_replica >= best.rps_per_replica
    ]
    return Measurement(
        sustained=Sustained(rps=best.rps_per_replica, p50_ms=best.p50_ms, unit=report.unit),
        plateau=best,
        plateaus=sorted(plateaus, key=lambda p: p.start),
        bound_rps=min(over, default=None),
        steady_s=steady_s,
    )

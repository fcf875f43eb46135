"""Evaluate a scenario's expectations on a recorded timeline.

Reference points, all read from the timeline itself (t in s since the load started):
- rise: the first second the user count is above its starting value (the load step); the
  start of the run if it never rises (soak);
- end: the first second after the last one with users running;
- drop: the first second the user count is below its peak again (the end of a spike);
- baseline: the service's replica count at the first observer sample;
- fault: when the scenario's fault was injected (the run records it, `RunFacts`).
Every check reports what it measured, so a failure says by how much.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from gantry.canary import Outcome, Phase
from gantry.jobs import RESUMED_FROM
from loadtests.scenario import Expectations, JobExpectation
from loadtests.timeline import Sample

# What ends a rollout, by outcome, lower-cased as the timeline may hold it: a cluster's Flagger
# Canary phase, or the sandbox driver's final event (loadtests/observers.py).
PROMOTED = {Phase.SUCCEEDED.lower(), Outcome.PROMOTED.value}
ROLLED_BACK = {Phase.FAILED.lower(), Outcome.ROLLED_BACK.value}


class Check(BaseModel):
    name: str
    expected: str
    measured: int | float | str | None
    passed: bool
    detail: str = ""


class Points(BaseModel):
    rise: int | None
    end: int | None
    baseline: int | None
    drop: int | None = None


class JobFacts(BaseModel):
    """How one job of the run went (from the sandbox's queue and the job's result file)."""

    state: str
    preemptions: int = 0
    attempts: int = 0
    result: dict[str, Any] = {}  # the job's gantry.jobs.RESULT_FILE, if it wrote one


class RunFacts(BaseModel):
    """What the run knows beyond the timeline: Locust's totals and the fault's time."""

    requests: int = 0
    failure_errors: dict[str, int] = {}
    """Locust's failure messages (loadtests/payloads.py) and how often each occurred."""
    max_latency_ms: float | None = None
    fault_at_s: float | None = None
    replica_deaths: int | None = None
    """Replicas that died unintended during the run (None: the observer cannot tell)."""
    jobs: dict[str, JobFacts] = {}
    """The scenario's jobs as the queue last saw them, by name."""


# A clean failure: the platform answered, with a 5xx or Serve's 408 (its request timeout), as
# payloads._parse reports it; not a closed connection, a client timeout or a wrong answer.
CLEAN_FAILURE = re.compile(r"HTTP (5\d\d|408): ")


def reference_points(samples: list[Sample]) -> Points:
    loaded = [s for s in samples if s.users]
    rise = end = None
    if loaded:
        start_users = loaded[0].users or 0
        rise = next((s.t for s in loaded if (s.users or 0) > start_users), loaded[0].t)
        end = loaded[-1].t + 1
    baseline = next((r for s in samples if (r := s.total_replicas) is not None), None)
    peak = max((s.users or 0 for s in loaded), default=0)
    at_peak = next((i for i, s in enumerate(loaded) if s.users == peak), None)
    drop = None
    if at_peak is not None:
        drop = next((s.t for s in loaded[at_peak:] if (s.users or 0) < peak), None)
    return Points(rise=rise, end=end, baseline=baseline, drop=drop)


def evaluate(
    exp: Expectations,
    samples: list[Sample],
    failures: int,
    slo_p99_ms: float | None = None,
    facts: RunFacts | None = None,
) -> list[Check]:
    """One Check per expectation set in `exp` (in a stable order); `slo_p99_ms`: the service's
    p99 latency SLO, the bound of `p99_within_slo`."""
    facts = facts or RunFacts()
    pts = reference_points(samples)
    checks: list[Check] = []
    evaluators: list[tuple[object, Callable[[], Check]]] = [
        (exp.scale_out_decided_within_s, lambda: _scale_out_decided(exp, samples, pts)),
        (exp.scale_out_within_s, lambda: _scale_out(exp, samples, pts)),
        (exp.max_replicas_reached, lambda: _max_replicas(exp, samples)),
        (exp.replaced_within_s, lambda: _replaced(exp, samples, facts)),
        (exp.p99_within_slo or None, lambda: _p99(exp, samples, pts, slo_p99_ms, facts)),
        (exp.scale_in_within_s, lambda: _scale_in(exp, samples, pts)),
        (exp.failed_requests, lambda: _failed(exp, failures)),
        (exp.failed_ratio, lambda: _failed_ratio(exp, failures, facts)),
        (exp.clean_failures or None, lambda: _clean(facts)),
        (exp.max_latency_ms, lambda: _max_latency(exp, facts)),
        (exp.replica_deaths, lambda: _deaths(exp, facts)),
        (exp.rollout, lambda: _rollout(exp, samples)),
        *((job, lambda n=name, j=job: _job(n, j, facts)) for name, job in exp.jobs.items()),
    ]
    for wanted, check in evaluators:
        if wanted is not None:
            checks.append(check())
    return checks


def _no_data(name: str, expected: str, why: str) -> Check:
    return Check(name=name, expected=expected, measured=None, passed=False, detail=why)


def _scale_out_decided(exp: Expectations, samples: list[Sample], pts: Points) -> Check:
    return _first_above_baseline(
        "scale_out_decided_within_s",
        exp.scale_out_decided_within_s,
        f"<= {exp.scale_out_decided_within_s:g} s after the load rose",
        samples if any(s.desired for s in samples) else [],
        pts,
        lambda s: s.desired,
        lambda s, n: f"wanted {n} replicas at t={s.t}s",
        "no load data, or the autoscaler's wish was not observed",
        f"never wanted more than {pts.baseline} replicas",
    )


def _scale_out(exp: Expectations, samples: list[Sample], pts: Points) -> Check:
    return _first_above_baseline(
        "scale_out_within_s",
        exp.scale_out_within_s,
        f"<= {exp.scale_out_within_s:g} s",
        samples,
        pts,
        lambda s: s.total_replicas,
        lambda s, n: f"{pts.baseline} -> {n} replicas at t={s.t}s (load rose at t={pts.rise}s)",
        "no replica or load data",
        f"never scaled out: stayed at {pts.baseline} replicas",
    )


def _first_above_baseline(
    name: str,
    limit: float | None,
    expected: str,
    samples: list[Sample],
    pts: Points,
    count: Callable[[Sample], int | None],
    detail: Callable[[Sample, int], str],
    no_data: str,
    never: str,
) -> Check:
    """Seconds from the load's rise to the first sample whose `count` exceeds the baseline."""
    if pts.baseline is None or pts.rise is None or not samples:
        return _no_data(name, expected, no_data)
    for s in samples:
        if s.t >= pts.rise and (n := count(s)) is not None and n > pts.baseline:
            took = float(s.t - pts.rise)
            return Check(
                name=name,
                expected=expected,
                measured=took,
                passed=took <= (limit or 0),
                detail=detail(s, n),
            )
    return _no_data(name, expected, never)


def _max_replicas(exp: Expectations, samples: list[Sample]) -> Check:
    wanted = exp.max_replicas_reached or 0
    seen = [n for s in samples if (n := s.total_replicas) is not None]
    if not seen:
        return _no_data("max_replicas_reached", f">= {wanted}", "no replica data")
    top = max(seen)
    return Check(
        name="max_replicas_reached", expected=f">= {wanted}", measured=top, passed=top >= wanted
    )


def _p99(
    exp: Expectations, samples: list[Sample], pts: Points, bound: float | None, facts: RunFacts
) -> Check:
    name = "p99_within_slo"
    if bound is None:
        return _no_data(name, "< the service's SLO", "the service's p99 SLO is not known")
    loaded = [
        s
        for s in samples
        if pts.rise is not None and pts.end is not None and pts.rise <= s.t < pts.end
        if s.p99_ms is not None
    ]
    if not loaded:
        return _no_data(name, f"< {bound:g} ms", "no latency data under load")
    worst = max(s.p99_ms or 0.0 for s in loaded)
    if exp.recover_within_s is None:
        return Check(
            name=name,
            expected=f"< {bound:g} ms throughout the load",
            measured=round(worst, 1),
            passed=worst < bound,
        )
    # The recovery point: from there on, p99 stays under the bound until the load ends.
    recovered_at = None
    for s in reversed(loaded):
        if (s.p99_ms or 0.0) >= bound:
            break
        recovered_at = s.t
    origin = {"rise": pts.rise, "drop": pts.drop, "fault": facts.fault_at_s}[exp.recover_after]
    expected = f"< {bound:g} ms within {exp.recover_within_s:g} s of the {exp.recover_after}"
    if recovered_at is None:
        last = loaded[-1].p99_ms or 0.0
        return _no_data(
            name, expected, f"never recovered: p99 {last:.0f} ms at the end of the load"
        )
    if origin is None:
        return _no_data(name, expected, f"the run has no {exp.recover_after} to count from")
    took = round(max(0.0, recovered_at - origin), 1)
    return Check(
        name=name,
        expected=expected,
        measured=took,
        passed=took <= exp.recover_within_s,
        detail=f"under {bound:g} ms from t={recovered_at}s on (worst {worst:.0f} ms)",
    )


def _scale_in(exp: Expectations, samples: list[Sample], pts: Points) -> Check:
    limit = exp.scale_in_within_s or 0.0
    expected = f"<= {limit:g} s"
    if pts.baseline is None or pts.end is None:
        return _no_data("scale_in_within_s", expected, "no replica or load data")
    after = [(s.t, n) for s in samples if s.t >= pts.end and (n := s.total_replicas) is not None]
    for t, n in after:
        if n <= pts.baseline:
            took = float(t - pts.end)
            return Check(
                name="scale_in_within_s",
                expected=expected,
                measured=took,
                passed=took <= limit,
                detail=f"back to {n} replicas at t={t}s (load ended at t={pts.end}s)",
            )
    last = after[-1][1] if after else "?"
    return _no_data(
        "scale_in_within_s",
        expected,
        f"still {last} replicas (baseline {pts.baseline}) when observation ended",
    )


def _failed(exp: Expectations, failures: int) -> Check:
    return _at_most("failed_requests", exp.failed_requests or 0, failures, "")


def outcome(phase: str | None) -> Outcome | None:
    """`promoted`, `rolled_back`, or None while a rollout is in progress (or never ran)."""
    p = (phase or "").lower()
    if p in PROMOTED:
        return Outcome.PROMOTED
    if p in ROLLED_BACK:
        return Outcome.ROLLED_BACK
    return None


def _job(name: str, exp: JobExpectation, facts: RunFacts) -> Check:
    """The job ended as expected: its state, how often it was preempted, whether it resumed."""
    wanted: list[str] = [exp.state]
    if exp.min_preemptions is not None:
        wanted.append(f"preempted >= {exp.min_preemptions}x")
    if exp.resumed is not None:
        wanted.append("resumed from a checkpoint" if exp.resumed else "never resumed")
    job = facts.jobs.get(name)
    if job is None:
        return _no_data(f"job {name}", ", ".join(wanted), "the job was never queued")
    resumed_from = job.result.get(RESUMED_FROM)
    passed = (
        job.state == exp.state
        and (exp.min_preemptions is None or job.preemptions >= exp.min_preemptions)
        and (exp.resumed is None or (resumed_from is not None) == exp.resumed)
    )
    measured = f"{job.state}, preempted {job.preemptions}x"
    if resumed_from is not None:
        measured += f", resumed from {resumed_from}"
    return Check(name=f"job {name}", expected=", ".join(wanted), measured=measured, passed=passed)


def _rollout(exp: Expectations, samples: list[Sample]) -> Check:
    phases = [s.phase for s in samples if s.phase]
    final = outcome(phases[-1]) if phases else None
    return Check(
        name="rollout",
        expected=str(exp.rollout),
        measured=final or (phases[-1] if phases else None),
        passed=final == exp.rollout,
        detail="" if phases else "no rollout phase observed",
    )


def _replaced(exp: Expectations, samples: list[Sample], facts: RunFacts) -> Check:
    """Seconds from the fault until replicas and nodes per pool are back to their counts in the
    last sample before it (a lost replica or node was replaced)."""
    name, limit = "replaced_within_s", exp.replaced_within_s or 0.0
    expected = f"<= {limit:g} s after the fault"
    at = facts.fault_at_s
    seen = [s for s in samples if s.total_replicas is not None]
    before = [s for s in seen if at is not None and s.t < at]
    if at is None or not before:
        return _no_data(name, expected, "no fault, or no replica data before it")
    ref = before[-1]
    dipped = False
    for s in (s for s in seen if s.t >= at):
        whole = (s.total_replicas or 0) >= (ref.total_replicas or 0) and all(
            (s.nodes or {}).get(pool, 0) >= n for pool, n in (ref.nodes or {}).items()
        )
        dipped = dipped or not whole
        if whole and dipped:
            took = round(s.t - at, 1)
            return Check(
                name=name,
                expected=expected,
                measured=took,
                passed=took <= limit,
                detail=f"{s.total_replicas} replicas, nodes {s.nodes or {}} at t={s.t}s",
            )
    why = "the loss never showed" if not dipped else "never back to"
    return _no_data(name, expected, f"{why}: {ref.total_replicas} replicas, nodes {ref.nodes}")


def _failed_ratio(exp: Expectations, failures: int, facts: RunFacts) -> Check:
    allowed = exp.failed_ratio or 0.0
    ratio = failures / facts.requests if facts.requests else 0.0
    return Check(
        name="failed_ratio",
        expected=f"<= {allowed:.2%}",
        measured=round(ratio, 5),
        passed=ratio <= allowed,
        detail=f"{failures} of {facts.requests}",
    )


def _clean(facts: RunFacts) -> Check:
    unclean = {e: n for e, n in facts.failure_errors.items() if not CLEAN_FAILURE.search(e)}
    worst = max(unclean, key=lambda e: unclean[e], default="")
    return Check(
        name="clean_failures",
        expected="every failure answered: a 5xx or Serve's 408",
        measured=sum(unclean.values()),
        passed=not unclean,
        detail=f"e.g. {worst[:120]}" if unclean else "",
    )


def _at_most(
    name: str, limit: float, measured: float | None, why_none: str, unit: str = ""
) -> Check:
    """`measured` must not exceed `limit`; None: not measured, which fails (saying why)."""
    expected = f"<= {limit:g}{unit}"
    if measured is None:
        return _no_data(name, expected, why_none)
    return Check(name=name, expected=expected, measured=measured, passed=measured <= limit)


def _max_latency(exp: Expectations, facts: RunFacts) -> Check:
    slowest = None if facts.max_latency_ms is None else round(facts.max_latency_ms)
    why = "Locust's statistics are missing"
    return _at_most("max_latency_ms", exp.max_latency_ms or 0.0, slowest, why, " ms")


def _deaths(exp: Expectations, facts: RunFacts) -> Check:
    why = "the observer cannot count them"
    return _at_most("replica_deaths", exp.replica_deaths or 0, facts.replica_deaths, why)

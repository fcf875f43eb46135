"""Evaluate a scenario's expectations on a recorded timeline.

Reference points, all read from the timeline itself (t in s since the load started):
- rise: the first second the user count is above its starting value (the load step); the
  start of the run if it never rises (soak);
- end: the first second after the last one with users running;
- baseline: the service's replica count at the first observer sample.
Every check reports what it measured, so a failure says by how much.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from gantry.canary import Outcome, Phase
from loadtests.scenario import Expectations
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


def reference_points(samples: list[Sample]) -> Points:
    loaded = [s for s in samples if s.users]
    rise = end = None
    if loaded:
        start_users = loaded[0].users or 0
        rise = next((s.t for s in loaded if (s.users or 0) > start_users), loaded[0].t)
        end = loaded[-1].t + 1
    baseline = next((r for s in samples if (r := s.total_replicas) is not None), None)
    return Points(rise=rise, end=end, baseline=baseline)


def evaluate(
    exp: Expectations, samples: list[Sample], failures: int, slo_p99_ms: float | None = None
) -> list[Check]:
    """One Check per expectation set in `exp` (in a stable order); `slo_p99_ms`: the service's
    p99 latency SLO, the bound of `p99_within_slo`."""
    pts = reference_points(samples)
    checks: list[Check] = []
    evaluators: list[tuple[object, Callable[[], Check]]] = [
        (exp.scale_out_decided_within_s, lambda: _scale_out_decided(exp, samples, pts)),
        (exp.scale_out_within_s, lambda: _scale_out(exp, samples, pts)),
        (exp.max_replicas_reached, lambda: _max_replicas(exp, samples)),
        (exp.p99_within_slo or None, lambda: _p99(exp, samples, pts, slo_p99_ms)),
        (exp.scale_in_within_s, lambda: _scale_in(exp, samples, pts)),
        (exp.failed_requests, lambda: _failed(exp, failures)),
        (exp.rollout, lambda: _rollout(exp, samples)),
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


def _p99(exp: Expectations, samples: list[Sample], pts: Points, bound: float | None) -> Check:
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
    expected = f"< {bound:g} ms within {exp.recover_within_s:g} s"
    if recovered_at is None:
        last = loaded[-1].p99_ms or 0.0
        return _no_data(
            name, expected, f"never recovered: p99 {last:.0f} ms at the end of the load"
        )
    took = float(recovered_at - (pts.rise or 0))
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
    allowed = exp.failed_requests or 0
    return Check(
        name="failed_requests",
        expected=f"<= {allowed}",
        measured=failures,
        passed=failures <= allowed,
    )


def outcome(phase: str | None) -> Outcome | None:
    """`promoted`, `rolled_back`, or None while a rollout is in progress (or never ran)."""
    p = (phase or "").lower()
    if p in PROMOTED:
        return Outcome.PROMOTED
    if p in ROLLED_BACK:
        return Outcome.ROLLED_BACK
    return None


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

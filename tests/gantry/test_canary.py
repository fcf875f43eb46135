"""The canary policy's state machine, tick by tick (like Flagger's scheduler tests), and the one
table of metric checks both engines' queries come from."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import get_args

import pytest

from gantry import canary
from gantry.canary import (
    METRIC_CHECKS,
    Action,
    CanaryStatus,
    CheckResult,
    Do,
    Engine,
    Outcome,
    Phase,
    advance,
)
from gantry.service import Canary, MetricName

REPO = Path(__file__).resolve().parents[2]

# interval 10 s, steps 25 -> 50 %, rollback at the 2nd failed check
POLICY = Canary.model_validate(
    {
        "interval": "10s",
        "threshold": 2,
        "stepWeight": 25,
        "maxWeight": 50,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}},
            {"name": "request-duration", "thresholdRange": {"max": 500}},
        ],
    }
)
PASS = [
    CheckResult("request-success-rate", 100.0, 99, None),
    CheckResult("request-duration", 80.0, None, 500),
]
FAIL = [CheckResult("request-success-rate", 50.0, 99, None), PASS[1]]
NO_DATA = [CheckResult("request-success-rate", None, 99, None), PASS[1]]


def progressing_at_25(t: float = 0) -> CanaryStatus:
    """A rollout v1 -> v2 whose canary got its first step at `t + 1`."""
    s, a = advance(POLICY, canary.start("v1", "v2", now=t), None, t)
    assert (s.phase, a) == (Phase.INITIALIZED, Action(Do.INITIALIZE))
    s, a = advance(POLICY, s, None, t + 1)
    assert (s.phase, s.canary_weight, a) == (
        Phase.PROGRESSING,
        25,
        Action(Do.SET_WEIGHT, weight=25),
    )
    return s


def test_promotes_after_the_steps() -> None:
    s = progressing_at_25()
    assert advance(POLICY, s, None, 5) == (s, Action(Do.WAIT, until=11))  # not due yet
    assert advance(POLICY, s, None, 11) == (s, Action(Do.RUN_CHECKS))  # due: run the checks
    s, a = advance(POLICY, s, PASS, 11)
    assert (s.canary_weight, s.iterations, s.last_step_time) == (50, 1, 11)
    assert a == Action(Do.SET_WEIGHT, weight=50)
    s, a = advance(POLICY, s, PASS, 21)  # the pass at maxWeight promotes
    assert (s.phase, s.canary_weight, a) == (Phase.PROMOTING, 100, Action(Do.PROMOTE, weight=100))
    s, a = advance(POLICY, s, None, 22)
    assert (s.phase, a, s.outcome) == (Phase.SUCCEEDED, Action(Do.FINALISE), Outcome.PROMOTED)
    assert advance(POLICY, s, None, 23) == (s, Action(Do.NOTHING))
    assert s.failed_checks == 0 and s.iterations == 2


def test_rolls_back_at_the_threshold() -> None:
    s = progressing_at_25()
    s, a = advance(POLICY, s, FAIL, 11)
    assert (s.phase, s.canary_weight, s.failed_checks) == (Phase.PROGRESSING, 25, 1)
    assert a == Action(Do.WAIT, until=21)  # no step after a failure
    s, a = advance(POLICY, s, FAIL, 21)  # the threshold-th failure rolls back at once
    assert (s.phase, s.canary_weight, s.failed_checks) == (Phase.FAILED, 0, 2)
    assert a == Action(Do.ROLL_BACK, weight=0, reason="2 failed checks (threshold 2)")
    assert s.outcome is Outcome.ROLLED_BACK
    assert advance(POLICY, s, None, 31) == (s, Action(Do.NOTHING))


def test_failures_count_across_passes() -> None:
    s = progressing_at_25()
    s, _ = advance(POLICY, s, FAIL, 11)
    s, a = advance(POLICY, s, PASS, 21)
    assert (s.failed_checks, a) == (1, Action(Do.SET_WEIGHT, weight=50))
    s, a = advance(POLICY, s, FAIL, 31)
    assert (s.phase, a.do) == (Phase.FAILED, Do.ROLL_BACK)


@pytest.mark.parametrize(
    "checks",
    [NO_DATA, [PASS[1]], []],
    ids=["no data", "a check missing", "no results"],
)
def test_no_data_counts_as_a_failed_check(checks: list[CheckResult]) -> None:
    s, a = advance(POLICY, progressing_at_25(), checks, 11)
    assert (s.failed_checks, s.canary_weight, a.do) == (1, 25, Do.WAIT)


@pytest.mark.parametrize(
    ("value", "lo", "hi", "passed"),
    [(None, 99, None, False), (99.5, 99, None, True), (98, 99, None, False),
     (900, None, 750, False), (750, None, 750, True)],
)  # fmt: skip
def test_a_check_passes_inside_its_range_only(
    value: float | None, lo: float | None, hi: float | None, passed: bool
) -> None:
    assert CheckResult("m", value, lo, hi).passed is passed


def test_a_pause_holds_the_weight_and_counts_nothing_then_resumes_where_it_was() -> None:
    s = progressing_at_25()
    s, _ = advance(POLICY, s, FAIL, 11)  # one failure before the pause
    s = canary.set_paused(s, True)
    s, a = advance(POLICY, s, None, 15)
    assert (s.phase, a) == (Phase.WAITING, Action(Do.WAIT, until=None))
    for t in (25, 40, 300):  # long past the interval: no analysis, no step, no failure counted
        after, a = advance(POLICY, s, FAIL, t)
        assert (after, a) == (s, Action(Do.WAIT, until=None))
    s = canary.set_paused(s, False)
    s, a = advance(POLICY, s, None, 400)
    assert (s.phase, s.canary_weight, s.failed_checks) == (Phase.PROGRESSING, 25, 1)
    assert a == Action(Do.WAIT, until=410)  # a full interval of fresh data before the next check
    s, a = advance(POLICY, s, PASS, 410)
    assert (s.canary_weight, a) == (50, Action(Do.SET_WEIGHT, weight=50))


def test_a_pause_before_the_first_step_resumes_with_it() -> None:
    s, _ = advance(POLICY, canary.start("v1", "v2", now=0), None, 0)
    s, a = advance(POLICY, canary.set_paused(s, True), None, 1)
    assert (s.phase, a.do) == (Phase.WAITING, Do.WAIT)
    s, a = advance(POLICY, canary.set_paused(s, False), None, 50)
    assert (s.phase, a) == (Phase.PROGRESSING, Action(Do.SET_WEIGHT, weight=25))


def test_an_asked_for_rollback_comes_first_except_during_a_promotion() -> None:
    s = canary.request_rollback(canary.set_paused(progressing_at_25(), True), "aborted")
    assert canary.request_rollback(s, "later").reason == "aborted"  # the first reason stays
    s, a = advance(POLICY, s, None, 2)
    assert (s.phase, a) == (Phase.FAILED, Action(Do.ROLL_BACK, weight=0, reason="aborted"))
    assert canary.request_rollback(s, "again") == s  # finished
    smoke = canary.request_rollback(advance(POLICY, canary.start("v1", "v2", 0), None, 0)[0], "x")
    assert advance(POLICY, smoke, None, 1)[1].do is Do.ROLL_BACK  # a failed pre-rollout hook
    promoting = CanaryStatus(
        phase=Phase.PROMOTING, stable="v1", canary="v2", canary_weight=100, last_step_time=0
    )
    assert canary.request_rollback(promoting, "aborted") == promoting
    assert advance(POLICY, promoting, None, 1)[1].do is Do.FINALISE


# Check results per tick of a rollout that fails once, then passes: (time, results).
Tick = tuple[float, list[CheckResult] | None]
SCRIPT: list[Tick] = [(0, None), (1, None), (11, FAIL), (21, PASS), (31, PASS), (32, None)]


def _drive(status: CanaryStatus, ticks: list[Tick]) -> tuple[list[Action], CanaryStatus]:
    """A minimal engine: each tick's action, persisting the status (as JSON) after it."""
    actions = []
    for now, checks in ticks:
        status, action = advance(POLICY, status, checks, now)
        actions.append(action)
        status = CanaryStatus.model_validate_json(status.model_dump_json())
    return actions, status


@pytest.mark.parametrize("killed_at", range(len(SCRIPT)))
def test_a_driver_killed_between_two_ticks_resumes(killed_at: int) -> None:
    """Killed while performing tick `killed_at`'s action, before saving the status it led to:
    the next driver reloads the status saved before, gets the same action again (the engine
    redoes it: every action is idempotent) and carries on as if never killed."""
    whole, end = _drive(canary.start("v1", "v2", 0), SCRIPT)
    assert end.outcome is Outcome.PROMOTED
    before, saved = _drive(canary.start("v1", "v2", 0), SCRIPT[:killed_at])
    now, checks = SCRIPT[killed_at]
    _, interrupted = advance(POLICY, saved, checks, now)  # performed, its status never saved
    reloaded = CanaryStatus.model_validate_json(saved.model_dump_json())
    after, resumed_end = _drive(reloaded, SCRIPT[killed_at:])
    assert after[0] == interrupted
    assert before + after == whole
    assert resumed_end == end


def test_the_status_is_json_with_flaggers_names() -> None:
    s = progressing_at_25()
    doc = s.model_dump(mode="json")
    assert doc["phase"] == "Progressing" and doc["canary_weight"] == 25
    assert {p.value for p in Phase} >= {
        "Initializing", "Initialized", "Waiting", "Progressing", "Promoting", "Finalising",
        "Succeeded", "Failed",
    }  # fmt: skip
    assert [o.exit_code for o in Outcome] == [0, 1, 130]


# ---------------------------------------------------------------- the one table of checks


def test_every_metric_has_a_query_for_each_engine() -> None:
    names, engines = get_args(MetricName), get_args(Engine)
    assert set(METRIC_CHECKS) == set(itertools.product(names, engines))
    for name in names:
        # The sandbox has no built-ins: it computes every check itself.
        assert "[30s]" in canary.sandbox_query(name, "embedder", "v2", 30)
        query = canary.cluster_query(name)
        if query is not None:  # else Flagger's built-in check
            assert "{{ interval }}" in query and "{{ target }}" in query, name
    assert {n for n in names if canary.cluster_query(n) is None} == {
        "request-success-rate",
        "request-duration",
    }


def test_both_engines_share_a_formula_with_their_own_selector() -> None:
    sandbox = canary.sandbox_query("serve-error-rate", "embedder", "v2", 30)
    cluster = canary.cluster_query("serve-error-rate")
    assert cluster is not None
    assert 'application="embedder-v2"' in sandbox and "[30s]" in sandbox
    in_sandbox = cluster.replace(canary.CLUSTER_SCOPE.serve, 'application="embedder-v2"')
    assert sandbox == in_sandbox.replace("{{ interval }}", "30s")
    success = canary.sandbox_query("request-success-rate", "embedder", "v2", 30)
    assert 'service="embedder", version="v2"' in success


def test_absent_errors_count_as_zero_written_once() -> None:
    for query in (
        canary.cluster_query("serve-error-rate"),
        canary.sandbox_query("serve-error-rate", "s", "v", 30),
    ):
        assert query is not None and "or vector(0)" in query
    sources = [
        p
        for d in ("gantry", "infra", "sandbox", "loadtests")
        for p in (REPO / d).rglob("*.py")
        if re.search(r"or vector\(0\)", p.read_text())
    ]
    assert [p.relative_to(REPO).as_posix() for p in sources] == ["gantry/canary.py"]

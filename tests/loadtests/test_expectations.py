"""Expectations evaluated on recorded timelines: measured values, pass and fail."""

from pathlib import Path

from loadtest_timelines import fault_run, step_run

from loadtests.expectations import Check, RunFacts, evaluate, reference_points
from loadtests.scenario import Expectations
from loadtests.timeline import (
    LoadPoint,
    PlatformPoint,
    Sample,
    merge,
    read_timeline,
    write_timeline,
)

SLO_MS = 2000  # the service's p99 SLO in these runs

ALL = Expectations(
    scale_out_decided_within_s=5,
    scale_out_within_s=30,
    max_replicas_reached=2,
    p99_within_slo=True,
    recover_within_s=30,
    scale_in_within_s=60,
    failed_requests=0,
)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_reference_points_come_from_the_timeline() -> None:
    pts = reference_points(step_run())
    assert (pts.rise, pts.end, pts.baseline) == (10, 60, 1)


def test_a_good_run_passes_with_measured_values() -> None:
    checks = by_name(evaluate(ALL, step_run(), failures=0, slo_p99_ms=SLO_MS))
    assert all(c.passed for c in checks.values()), checks
    assert checks["scale_out_decided_within_s"].measured == 2.0  # step at 10, wanted 2 at 12
    assert checks["scale_out_within_s"].measured == 8.0  # step at 10, second replica at 18
    assert checks["max_replicas_reached"].measured == 2
    assert checks["p99_within_slo"].measured == 15.0  # under 2000 ms from t=25 on
    assert checks["scale_in_within_s"].measured == 40.0  # load ended at 60, back at 100


def test_a_late_decision_fails_and_says_by_how_much() -> None:
    checks = by_name(
        evaluate(ALL, step_run(desired_at=27, scale_out_at=30), failures=0, slo_p99_ms=SLO_MS)
    )
    assert not checks["scale_out_decided_within_s"].passed
    assert checks["scale_out_decided_within_s"].measured == 17.0
    undecided = by_name(evaluate(ALL, step_run(desired_at=None, scale_out_at=None), failures=0))
    assert "never wanted more than 1" in undecided["scale_out_decided_within_s"].detail


def test_late_scale_out_fails_and_says_by_how_much() -> None:
    checks = by_name(evaluate(ALL, step_run(scale_out_at=50), failures=0))
    assert not checks["scale_out_within_s"].passed
    assert checks["scale_out_within_s"].measured == 40.0


def test_never_scaling_out_fails_every_replica_check() -> None:
    checks = by_name(evaluate(ALL, step_run(scale_out_at=None), failures=0))
    assert not checks["scale_out_within_s"].passed
    assert "never scaled out" in checks["scale_out_within_s"].detail
    assert not checks["max_replicas_reached"].passed
    assert checks["max_replicas_reached"].measured == 1


def test_no_scale_in_before_observation_ends_fails() -> None:
    checks = by_name(evaluate(ALL, step_run(scale_in_at=None), failures=0))
    assert not checks["scale_in_within_s"].passed
    assert "still 2 replicas" in checks["scale_in_within_s"].detail


def test_latency_that_does_not_recover_in_time_fails() -> None:
    run = step_run(latency_spike_until=50)
    checks = by_name(evaluate(ALL, run, failures=0, slo_p99_ms=SLO_MS))
    assert not checks["p99_within_slo"].passed
    assert checks["p99_within_slo"].measured == 40.0


def test_latency_over_the_bound_at_the_end_never_recovered() -> None:
    run = step_run(latency_spike_until=60)
    checks = by_name(evaluate(ALL, run, failures=0, slo_p99_ms=SLO_MS))
    assert not checks["p99_within_slo"].passed
    assert "never recovered" in checks["p99_within_slo"].detail


def test_p99_without_recovery_window_must_hold_throughout_under_the_services_slo() -> None:
    exp = Expectations(p99_within_slo=True)
    assert evaluate(exp, step_run(), failures=0, slo_p99_ms=4000)[0].passed
    worst = evaluate(exp, step_run(), failures=0, slo_p99_ms=3000)[0]
    assert (worst.passed, worst.measured) == (False, 3500.0)
    unknown = evaluate(exp, step_run(), failures=0)[0]  # no SLO given: fails, never passes
    assert (unknown.passed, unknown.measured) == (False, None)


def test_failed_requests() -> None:
    exp = Expectations(failed_requests=0)
    assert evaluate(exp, step_run(), failures=0)[0].passed
    check = evaluate(exp, step_run(), failures=3)[0]
    assert (check.passed, check.measured) == (False, 3)


def test_rollout_outcome_is_the_last_phase() -> None:
    flagger = step_run(phases={20: "Progressing", 40: "Promoting", 50: "Succeeded"})
    assert evaluate(Expectations(rollout="promoted"), flagger, 0)[0].passed
    rolled_back = step_run(phases={20: "Progressing", 45: "Failed"})
    check = evaluate(Expectations(rollout="promoted"), rolled_back, 0)[0]
    assert (check.passed, check.measured) == (False, "rolled_back")
    assert evaluate(Expectations(rollout="rolled_back"), rolled_back, 0)[0].passed
    unfinished = step_run(phases={20: "Progressing"})
    check = evaluate(Expectations(rollout="promoted"), unfinished, 0)[0]
    assert (check.passed, check.measured) == (False, "Progressing")


def test_no_observer_data_fails_instead_of_passing() -> None:
    blind = [s.model_copy(update={"replicas": None, "phase": None}) for s in step_run()]
    exp = Expectations(scale_out_within_s=30, scale_in_within_s=60, rollout="promoted")
    checks = evaluate(exp, blind, failures=0)
    assert [c.passed for c in checks] == [False, False, False]
    assert all(c.measured is None for c in checks)


def test_merge_buckets_both_sides_per_second_and_keeps_gaps(tmp_path: Path) -> None:
    t0 = 1000.0
    load = [LoadPoint(ts=t0 + 0.9, users=2, requests=5, failures=1, p50_ms=10, p95_ms=20),
            LoadPoint(ts=t0 + 2.1, users=2, requests=6, failures=0)]  # fmt: skip
    platform = [
        PlatformPoint(ts=t0 - 0.5, replicas={"v1": 9}),  # before the start: dropped
        PlatformPoint(ts=t0 + 0.2, replicas={"v1": 1}, nodes={"gpu": 1}),
        PlatformPoint(ts=t0 + 1.3, error="API down"),  # an error is a gap, not zero
        PlatformPoint(ts=t0 + 2.5, replicas={"v1": 2}),
    ]
    samples = merge(load, platform, t0)
    assert [s.t for s in samples] == [0, 1, 2]
    assert (samples[0].rps, samples[0].fail_rps, samples[0].total_replicas) == (5, 1, 1)
    assert samples[1].total_replicas is None and samples[1].users is None
    assert (samples[2].rps, samples[2].total_replicas) == (6, 2)
    write_timeline(tmp_path / "t.jsonl", samples)
    assert read_timeline(tmp_path / "t.jsonl") == samples


# Recorded by `gantry loadtest step` on the sandbox (2 shared, heavily loaded cores): Serve
# decided on a second replica 12 s after the step, a GPU-pool node joined at 27 s, the replica
# served from 49 s; p95 peaked at 17 s and settled around 5-9 s; back to one replica 33 s after.
RECORDED_STEP = read_timeline(Path(__file__).with_name("data") / "step_timeline.jsonl")


def test_a_recorded_sandbox_step_run() -> None:
    exp = Expectations(
        scale_out_decided_within_s=10,
        scale_out_within_s=60,
        max_replicas_reached=2,
        scale_in_within_s=150,
        failed_requests=0,
    )
    checks = by_name(evaluate(exp, RECORDED_STEP, failures=0))
    assert (checks["scale_out_within_s"].measured, checks["scale_out_within_s"].passed) == (
        39,
        True,
    )
    assert checks["max_replicas_reached"].measured == 2
    assert checks["scale_in_within_s"].measured == 33
    # The router-era sandbox decided 12 s after the step: over issue 13's 10 s.
    decided = checks["scale_out_decided_within_s"]
    assert (decided.measured, decided.passed) == (12, False)
    assert max(s.desired or 0 for s in RECORDED_STEP) == 2
    assert {s.nodes["gpu"] for s in RECORDED_STEP if s.nodes} == {1, 2}


def test_a_recorded_sandbox_rollout() -> None:
    """Recorded by `gantry loadtest rollout`: v2 canaried 25 -> 50 -> 100 % and promoted."""
    samples = read_timeline(Path(__file__).with_name("data") / "rollout_timeline.jsonl")
    exp = Expectations(rollout="promoted", failed_requests=0)
    checks = by_name(evaluate(exp, samples, failures=0))
    assert (checks["rollout"].measured, checks["rollout"].passed) == ("promoted", True)
    wrong = evaluate(Expectations(rollout="rolled_back"), samples, failures=0)[0]
    assert (wrong.measured, wrong.passed) == ("promoted", False)
    canary_weights = [s.weights["v2"] for s in samples if s.weights and "v2" in s.weights]
    assert sorted(set(canary_weights)) == [0.0, 25.0, 50.0, 100.0]
    assert samples[-1].replicas == {"v2": 1}  # v1 removed after the promotion


CHAOS = Expectations(
    replaced_within_s=15,
    p99_within_slo=True,
    recover_within_s=30,
    recover_after="fault",
    failed_ratio=0.005,
    clean_failures=True,
    max_latency_ms=30000,
    replica_deaths=0,
)


def test_a_fault_is_measured_from_when_it_was_injected() -> None:
    facts = RunFacts(requests=1000, fault_at_s=20, max_latency_ms=900.0, replica_deaths=0)
    checks = by_name(evaluate(CHAOS, fault_run(), failures=3, slo_p99_ms=SLO_MS, facts=facts))
    assert all(c.passed for c in checks.values()), checks
    assert checks["replaced_within_s"].measured == 10.0  # lost at 20, whole again at 30
    assert checks["p99_within_slo"].measured == 8.0  # under the SLO from t=28 on
    assert checks["failed_ratio"].measured == 0.003


def test_a_fault_that_is_never_repaired_fails_and_says_so() -> None:
    facts = RunFacts(requests=1000, fault_at_s=20, max_latency_ms=900.0, replica_deaths=2)
    run = fault_run(replaced_at=None, slow_until=80)
    checks = by_name(evaluate(CHAOS, run, failures=9, slo_p99_ms=SLO_MS, facts=facts))
    assert not checks["replaced_within_s"].passed
    assert "never back to: 2 replicas" in checks["replaced_within_s"].detail
    assert not checks["p99_within_slo"].passed
    assert not checks["failed_ratio"].passed  # 0.9 % > 0.5 %
    assert not checks["replica_deaths"].passed


def test_only_answered_5xx_and_timeouts_are_clean_failures() -> None:
    clean = {
        'CatchResponseError(\'HTTP 503: {"error": {"message": "busy"}}\')': 6,
        "CatchResponseError('HTTP 408: Request 1f3 timed out after 30.0s.')": 1,
    }
    hung = {'CatchResponseError("no response: ConnectionResetError(104)")': 1}
    exp = Expectations(clean_failures=True, max_latency_ms=30000)
    ok = by_name(evaluate(exp, fault_run(), 7, facts=RunFacts(failure_errors=clean)))
    assert ok["clean_failures"].passed and ok["clean_failures"].measured == 0
    bad = by_name(evaluate(exp, fault_run(), 8, facts=RunFacts(failure_errors=clean | hung)))
    assert not bad["clean_failures"].passed and "no response" in bad["clean_failures"].detail
    assert bad["max_latency_ms"].measured is None  # Locust's statistics missing: not a pass
    assert not bad["max_latency_ms"].passed


def test_recovery_counts_from_the_load_dropping_back() -> None:
    # A spike: 4 users, 16 from t=10 to t=30, then 4 again; p99 over the SLO until t=36.
    run = [
        Sample(t=t, users=16 if 10 <= t < 30 else 4, p99_ms=3500.0 if 10 <= t < 36 else 600.0)
        for t in range(60)
    ]
    exp = Expectations(p99_within_slo=True, recover_within_s=10, recover_after="drop")
    check = evaluate(exp, run, 0, slo_p99_ms=SLO_MS)[0]
    assert (check.passed, check.measured) == (True, 6.0)


def test_job_expectations_name_what_differs() -> None:
    from loadtests.expectations import JobFacts, RunFacts
    from loadtests.scenario import Expectations

    exp = Expectations.model_validate(
        {"jobs": {"a": {"min_preemptions": 1, "resumed": True}, "b": {"state": "succeeded"}}}
    )
    facts = RunFacts(
        jobs={
            "a": JobFacts(
                state="succeeded", preemptions=0, attempts=1, result={"resumed_from": None}
            ),
        }
    )
    a, b = evaluate(exp, [], 0, None, facts)
    assert (a.name, a.passed, a.measured) == ("job a", False, "succeeded, preempted 0x")
    assert a.expected == "succeeded, preempted >= 1x, resumed from a checkpoint"
    assert (b.passed, b.detail) == (False, "the job was never queued")

"""What one replica sustains within its SLO, measured on timelines with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loadtest_timelines import plateau_run

from gantry.rightsizing import Sustained
from gantry.service import Slo
from loadtests.sustained import (
    MIN_SECONDS,
    STEADY_S,
    Report,
    ReportError,
    ReportHead,
    measure,
    read_report,
    steady_seconds,
)
from loadtests.timeline import Sample, read_timeline, write_timeline

DATA = Path(__file__).parent / "data"
SLO = Slo(success_rate_percent=99.5, p99_latency_ms=750)
SANDBOX = "sandbox (Ray Serve + Ray nodes)"

# 1 user on 1 replica at 10 requests/s; 16 users overload it (80 requests/s, p99 900 ms over the
# 750 ms SLO); a second replica brings p99 to 400 ms at 140 requests/s: 70 per replica.
STEP = [
    (30, 1, 1, 10.0, 50.0, 100.0),
    (30, 16, 1, 80.0, 700.0, 900.0),
    (40, 16, 2, 140.0, 100.0, 400.0),
]


def _report(samples: list[Sample], scenario: str = "step", observer: str = SANDBOX) -> Report:
    head = ReportHead(scenario=scenario, service="embedder", observer=observer)
    return Report(Path("run"), head, samples)


def test_a_step_run_sustains_70_per_replica_bounded_by_80() -> None:
    m = measure(_report(plateau_run(*STEP)), SLO)
    assert m.sustained == Sustained(rps=70, p50_ms=100, unit="serve-replica")
    assert (m.plateau.users, m.plateau.replicas, m.plateau.within) == (16, 2, 30)
    assert m.plateau.p99_max_ms == 400
    assert m.bound_rps == 80  # the overloaded single replica
    # Each plateau's first STEADY_S seconds are left out: 30 - 10, 30 - 10, 40 - 10.
    assert [(p.users, p.replicas, p.seconds, p.within, p.over) for p in m.plateaus] == [
        (1, 1, 20, 20, 0),
        (16, 1, 20, 0, 20),
        (16, 2, 30, 30, 0),
    ]


def test_a_cluster_run_counts_pods() -> None:
    m = measure(_report(plateau_run(*STEP), observer="kubernetes (ml-serving/embedder)"), SLO)
    assert m.sustained.unit == "pod"


def test_the_seconds_after_a_change_do_not_count() -> None:
    # The new replica warming up: p99 2 s for 9 s after it joined, then 400 ms.
    run = plateau_run(*STEP[:2], (9, 16, 2, 140.0, 100.0, 2000.0), (31, 16, 2, 140.0, 100.0, 400.0))
    m = measure(_report(run), SLO)
    assert (m.sustained.rps, m.plateau.within, m.plateau.over) == (70, 30, 0)


def test_a_gap_in_the_data_is_skipped_not_a_change() -> None:
    run = plateau_run(*STEP)
    run[80] = Sample(t=80)
    m = measure(_report(run), SLO)
    assert (m.sustained.rps, m.plateau.within) == (70, 29)


def test_a_slow_ramp_is_measured_on_its_stairs() -> None:
    run = plateau_run(
        (25, 4, 1, 20.0, 100.0, 200.0),
        (25, 8, 1, 40.0, 200.0, 400.0),
        (25, 12, 1, 60.0, 400.0, 800.0),
    )
    m = measure(_report(run, scenario="ramp"), SLO)
    assert (m.sustained.rps, m.sustained.p50_ms, m.plateau.within, m.bound_rps) == (40, 200, 15, 60)


def test_a_run_never_over_the_slo_gives_a_lower_bound() -> None:
    m = measure(
        _report(plateau_run((30, 1, 1, 10.0, 50.0, 100.0), (30, 4, 1, 40.0, 90.0, 200.0))), SLO
    )
    assert (m.sustained.rps, m.bound_rps) == (40, None)


def test_failures_beyond_the_success_slo_leave_a_second_out_and_are_not_answers() -> None:
    run = plateau_run(*STEP)
    for s in run[60:100]:
        s.fail_rps = 10.0  # 7 % of 140: beyond the 99.5 % success SLO
    m = measure(_report(run), SLO)
    assert (m.sustained.rps, m.bound_rps) == (10, 70)
    run = plateau_run((30, 1, 1, 10.0, 50.0, 100.0), (30, 16, 2, 1000.0, 100.0, 400.0))
    for s in run[30:60]:
        s.fail_rps = 2.0  # 0.2 %: within the SLO, but not answered
    assert measure(_report(run), SLO).sustained.rps == 499


@pytest.mark.parametrize(
    ("run", "words"),
    [
        (plateau_run((60, 4, 1, 40.0, 100.0, 200.0)), ["never rises", "'step'", "soak"]),
        (
            [s.model_copy(update={"replicas": None}) for s in plateau_run(*STEP)],
            ["no replica counts", f"observer: {SANDBOX}"],
        ),
        (
            plateau_run((30, 1, 1, 10.0, 50.0, 900.0), (30, 16, 1, 80.0, 700.0, 900.0)),
            ["no 10 steady seconds within the SLO", "40 steady seconds", "0 of them within"],
        ),
        (
            plateau_run((19, 1, 1, 10.0, 50.0, 100.0), (19, 16, 2, 140.0, 100.0, 400.0)),
            ["18 steady seconds", "18 of them within the SLO"],
        ),
        ([Sample(t=t) for t in range(10)], ["no second with users running"]),
    ],
    ids=["soak", "no-replicas", "all-over-slo", "plateaus-too-short", "no-load"],
)
def test_unusable_runs_say_why_in_one_line(run: list[Sample], words: list[str]) -> None:
    with pytest.raises(ReportError) as err:
        measure(_report(run), SLO)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_the_recorded_step_run_has_no_p99_to_size_from() -> None:
    """tests/loadtests/data/step_timeline.jsonl (a real sandbox run) predates the p99 column."""
    samples = read_timeline(DATA / "step_timeline.jsonl")
    with pytest.raises(ReportError) as err:
        measure(_report(samples), SLO)
    loaded = sum(1 for s in samples if s.users)
    assert f"{loaded} loaded seconds have no p99" in str(err.value)


def test_read_report(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        read_report(tmp_path / "nope")
    with pytest.raises(ReportError, match=r"has no summary.json: not a `gantry loadtest` report"):
        read_report(tmp_path)
    (tmp_path / "summary.json").write_text("{")
    write_timeline(tmp_path / "timeline.jsonl", plateau_run(*STEP))
    with pytest.raises(ReportError, match=r"summary.json: Invalid JSON"):
        read_report(tmp_path)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ReportError, match=r"summary.json:scenario: required key is missing"):
        read_report(tmp_path)
    head = {"scenario": "step", "service": "embedder", "observer": SANDBOX, "passed": True}
    (tmp_path / "summary.json").write_text(json.dumps(head))
    run = read_report(tmp_path)
    assert (run.head.service, run.unit, len(run.samples)) == ("embedder", "serve-replica", 110)


def test_steady_seconds_follow_the_scenario_latency_window() -> None:
    assert steady_seconds(_report([], scenario="step")) == STEADY_S == 10  # a 5-s window
    assert steady_seconds(_report([], scenario="canary-fault")) == 120  # a 60-s window
    assert steady_seconds(_report([], scenario="gone")) == STEADY_S
    assert MIN_SECONDS == 10

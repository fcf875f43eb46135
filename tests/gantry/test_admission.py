"""Kueue's admission rule (gantry/admission.py): who is admitted, who waits and why, who is
preempted, for two teams in one cohort."""

from __future__ import annotations

from gantry.admission import Queue, Workload, decide, queues_from_teams
from gantry.teams import TeamsFile

BATCH, PREEMPTIBLE = 10_000, 100


def queues(research_borrows: bool = True) -> dict[str, Queue]:
    return {
        "research": Queue("research", {"cpu": {"cpu": 2, "memory_gib": 8}}, research_borrows),
        "serving": Queue("serving", {"cpu": {"cpu": 2, "memory_gib": 8}}),
    }


def job(name: str, team: str, cpu: float, at: float, priority: int = BATCH, **kw) -> Workload:
    return Workload(name, team, priority, {"cpu": {"cpu": cpu, "memory_gib": 1}}, at, **kw)


def running(name: str, team: str, cpu: float, at: float, priority: int = BATCH) -> Workload:
    return job(name, team, cpu, at, priority, admitted=True, admitted_at=at)


def test_jobs_within_quota_are_admitted_in_queue_order() -> None:
    d = decide(queues(), [job("b", "research", 1, 2), job("a", "research", 1, 1)])
    assert d.admit == ["a", "b"] and not d.waiting and not d.preempt


def test_a_team_borrows_what_the_other_leaves_idle() -> None:
    d = decide(queues(), [running("r1", "research", 2, 0), job("r2", "research", 2, 1)])
    assert d.admit == ["r2"]


def test_without_borrowing_a_team_waits_at_its_own_quota() -> None:
    d = decide(queues(False), [running("r1", "research", 2, 0), job("r2", "research", 1, 1)])
    assert d.admit == []
    assert d.waiting["r2"] == (
        "waiting for quota: team research on pool cpu: needs 1 cpu, 0 of its 2 left (no borrowing)"
    )


def test_the_owner_reclaims_borrowed_quota_by_preempting_the_borrower() -> None:
    work = [
        running("r1", "research", 2, 0),
        running("r2", "research", 2, 5),  # borrowed serving's 2 cores
        job("s1", "serving", 1, 10),
    ]
    d = decide(queues(), work)
    assert d.preempt == {"r2": "preempted for s1 (reclaimed by its owner)"}
    assert d.waiting == {"s1": "preempting r2"} and d.admit == []
    # Once r2 is gone, s1 fits its own quota and r2 waits again behind it.
    d = decide(queues(), [work[0], work[2], job("r2", "research", 2, 11)])
    assert d.admit == ["s1"]
    assert d.waiting["r2"].startswith("waiting for quota: pool cpu: needs 2 cpu")


def test_the_most_recently_admitted_borrower_goes_first() -> None:
    work = [
        running("r1", "research", 1, 0),
        running("r2", "research", 1.5, 1),
        running("r3", "research", 1.5, 2),  # research holds 4 of 4: 2 borrowed
        job("s1", "serving", 1, 3),
    ]
    assert list(decide(queues(), work).preempt) == ["r3"]


def test_higher_priority_goes_first_and_preempts_only_its_own_team() -> None:
    work = [
        running("low", "research", 2, 0, PREEMPTIBLE),
        running("s1", "serving", 2, 1, PREEMPTIBLE),
        job("high", "research", 2, 2, BATCH),
    ]
    d = decide(queues(), work)
    assert d.preempt == {"low": "preempted for high (higher priority)"}
    # Never another team's job within its own quota, whatever its priority.
    assert "s1" not in d.preempt


def test_priority_orders_the_queue_before_arrival() -> None:
    work = [
        running("r0", "research", 2, 0),
        running("s0", "serving", 2, 0),
        job("first-but-low", "research", 2, 1, PREEMPTIBLE),
        job("later-but-high", "research", 2, 2, BATCH),
    ]
    d = decide(queues(), work)
    assert d.admit == [] and not d.preempt  # equal or higher priority runs: nobody preempted
    d = decide(queues(), [work[1], work[2], work[3]])  # r0 finished
    assert d.admit == ["later-but-high"]
    assert "first-but-low" in d.waiting


def test_a_small_job_is_not_held_back_by_a_large_one_that_waits() -> None:
    work = [
        running("s0", "serving", 1, 0),
        job("big", "research", 4, 1),
        job("small", "research", 1, 2),
    ]
    d = decide(queues(), work)
    assert d.admit == ["small"] and "big" in d.waiting


def test_a_job_larger_than_the_cohort_waits_with_the_numbers() -> None:
    d = decide(queues(), [job("huge", "research", 5, 0)])
    assert d.waiting["huge"] == (
        "waiting for quota: pool cpu: needs 5 cpu; team research has 2 of its 2 left, "
        "the cohort 4 of 4"
    )


def test_a_pool_without_quota_is_never_admitted() -> None:
    w = Workload("g", "research", BATCH, {"gpu": {"gpus": 1}}, 0)
    d = decide(queues(), [w])
    assert d.waiting["g"].startswith("waiting for quota: pool gpu: needs 1 gpus")


def test_queues_come_from_the_teams_file() -> None:
    teams = TeamsFile.model_validate(
        {
            "teams": [
                {
                    "name": "a",
                    "group": "g",
                    "pools": ["cpu"],
                    "quota": {"cpu": 4, "memory_gib": 8, "pods": 4},
                    "jobs": {"quota": {"cpu": {"cpu": 1.5}}, "borrowing": False},
                }
            ]
        }
    )
    q = queues_from_teams(teams)["a"]
    assert q.nominal == {"cpu": {"cpu": 1.5, "memory_gib": 0, "gpus": 0}} and not q.borrowing

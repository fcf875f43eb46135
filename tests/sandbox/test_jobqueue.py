"""The sandbox's job queue controller (sandbox/jobqueue.py) over a fake Ray Jobs API: requests,
admission, preemption and requeueing, max_run_s, stop; the order of events a user sees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gantry.sandbox_state import JobRecord, read_jobs
from sandbox.jobqueue import Controller
from sandbox.jobs import _request

QUEUES = {
    "research": {"nominal": {"cpu": {"cpu": 1, "memory_gib": 4, "gpus": 0}}, "borrowing": True},
    "serving": {"nominal": {"cpu": {"cpu": 0.5, "memory_gib": 1, "gpus": 0}}, "borrowing": True},
}


@dataclass
class Info:
    status: str
    message: str = ""


class FakeJobs:
    """Ray's JobSubmissionClient as the controller uses it."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.submitted: list[str] = []

    def submit_job(self, submission_id: str, **_: Any) -> str:
        submission_id = submission_id.rsplit("-", 1)[0]  # without its unique suffix
        self.submitted.append(submission_id)
        self.status[submission_id] = "RUNNING"
        return submission_id

    def stop_job(self, submission_id: str) -> bool:
        self.status[submission_id.rsplit("-", 1)[0]] = "STOPPED"
        return True

    def get_job_info(self, submission_id: str) -> Info:
        if submission_id.rsplit("-", 1)[0] not in self.status:
            raise RuntimeError(
                f"Request failed with status code 404: Job {submission_id} does not exist."
            )
        status = self.status[submission_id.rsplit("-", 1)[0]]
        return Info(
            f"JobStatus.{status}", "Traceback...\nValueError: bad" if status == "FAILED" else ""
        )


def run_request(state_dir: Path, name: str, team: str, cpu: float, priority: int = 10_000) -> None:
    rec = JobRecord(
        name=name,
        team=team,
        pool="cpu",
        priority="gantry-batch" if priority == 10_000 else "gantry-preemptible",
        priority_value=priority,
        requests={"cpu": {"cpu": cpu, "memory_gib": 1, "gpus": 0}},
        run=1,
        run_dir=str(state_dir / name),
        queued_at=0,
        max_run_s=100,
        submit={"entrypoint": "true"},
    )
    _request(state_dir, {"op": "run", "record": rec.model_dump(mode="json"), "queues": QUEUES})


@pytest.fixture
def queue(tmp_path: Path) -> tuple[Controller, FakeJobs]:
    jobs = FakeJobs()
    return Controller(tmp_path, jobs, "controller-1"), jobs


def states(c: Controller) -> dict[str, tuple[str, int]]:
    return {n: (r.state, r.attempts) for n, r in read_jobs(c.state_dir).jobs.items()}


def test_the_owner_reclaims_and_the_borrower_resumes_after_it(queue) -> None:
    c, jobs = queue
    run_request(c.state_dir, "train", "research", 1.5)  # borrows 0.5 of serving's quota
    c.tick(1)
    assert states(c) == {"train": ("running", 1)}
    run_request(c.state_dir, "embed", "serving", 0.5)
    c.tick(2)  # embed preempts train; both queued
    assert states(c) == {"train": ("queued", 1), "embed": ("queued", 0)}
    assert jobs.status["train-1-1"] == "STOPPED"
    c.tick(3)  # embed goes first (it was queued before train was requeued): no ping-pong
    assert states(c) == {"train": ("queued", 1), "embed": ("running", 1)}
    rec = read_jobs(c.state_dir).jobs["train"]
    assert rec.reason.startswith("waiting for quota: pool cpu: needs 1.5 cpu")
    c.tick(4)
    assert states(c)["train"] == ("queued", 1)
    jobs.status["embed-1-1"] = "SUCCEEDED"
    c.tick(5)  # embed done: train is admitted again, as a second attempt of the same run
    assert states(c) == {"train": ("running", 2), "embed": ("succeeded", 1)}
    train = read_jobs(c.state_dir).jobs["train"]
    assert [(e.state, e.reason) for e in train.events] == [
        ("queued", ""),
        ("running", ""),
        ("queued", "preempted for embed (reclaimed by its owner)"),
        ("running", "attempt 2: resumes from its last checkpoint"),
    ]
    assert jobs.submitted == ["train-1-1", "embed-1-1", "train-1-2"]


def test_a_job_past_max_run_s_is_stopped_and_failed(queue) -> None:
    c, jobs = queue
    run_request(c.state_dir, "train", "research", 1)
    c.tick(1)
    c.tick(102)
    rec = read_jobs(c.state_dir).jobs["train"]
    assert (rec.state, rec.reason) == ("failed", "ran past max_run_s (100 s)")
    assert jobs.status["train-1-1"] == "STOPPED"


def test_a_failed_job_says_why_and_a_stopped_one_frees_its_quota(queue) -> None:
    c, jobs = queue
    run_request(c.state_dir, "a", "research", 1)
    run_request(c.state_dir, "b", "research", 1)
    run_request(c.state_dir, "c", "serving", 0.5)
    c.tick(1)
    assert states(c) == {"a": ("running", 1), "b": ("queued", 0), "c": ("running", 1)}
    jobs.status["a-1-1"] = "FAILED"
    c.tick(2)
    assert read_jobs(c.state_dir).jobs["a"].reason == "ValueError: bad"
    assert states(c)["b"] == ("running", 1)
    _request(c.state_dir, {"op": "stop", "name": "b"})
    c.tick(3)
    assert states(c)["b"] == ("stopped", 1) and jobs.status["b-1-1"] == "STOPPED"


def test_a_run_request_for_an_active_job_is_ignored(queue) -> None:
    c, _ = queue
    run_request(c.state_dir, "a", "research", 1)
    c.tick(1)
    run_request(c.state_dir, "a", "research", 1)
    c.tick(2)
    assert states(c) == {"a": ("running", 1)}
    assert not list((c.state_dir / "jobs" / "requests").iterdir())


def test_a_job_whose_ray_job_vanished_is_queued_again(queue) -> None:
    c, _ = queue
    run_request(c.state_dir, "train", "research", 1)
    c.tick(1)
    # The sandbox was restarted: a new controller on a new Ray, whose job table is empty.
    fresh = FakeJobs()
    c2 = Controller(c.state_dir, fresh, "controller-2")
    c2.tick(2)
    rec = read_jobs(c.state_dir).jobs["train"]
    assert (rec.state, rec.attempts) == ("running", 2)
    assert [e.reason for e in rec.events][-2:] == [
        "its Ray job was lost with the sandbox's Ray",
        "attempt 2: resumes from its last checkpoint",
    ]
    assert fresh.submitted == ["train-1-2"]

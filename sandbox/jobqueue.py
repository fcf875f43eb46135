"""The sandbox's job queue: Kueue's part, over Ray's Jobs API (`python -m sandbox.jobqueue`).

It runs inside the sandbox as a Ray job of its own (started by the first `gantry job run`,
sandbox/jobs.py; it ends with the sandbox's Ray). Every TICK_S it:

1. takes the CLI's requests (`<state>/jobs/requests/*.json`: run a job, stop a job), in order;
2. reads the state of every admitted job's Ray job (finished, failed, past its max_run_s);
3. asks gantry.admission.decide which queued jobs to admit and which admitted ones to preempt,
   with the teams' quotas from the teams file: preempted jobs' Ray jobs are stopped and queued
   again (their run directory is kept: they resume from their last checkpoint), admitted ones
   are submitted to Ray, each attempt as its own Ray job `<name>-<run>-<attempt>`;
4. writes the queue to `<state>/jobs/queue.json`, which `gantry job list` and the load tests read.

A tick that fails (the dashboard restarting) is logged and the next one tries again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from gantry.admission import Queue, Workload, decide
from gantry.sandbox_state import (
    JOB_QUEUE_FILE,
    JOBS_DIR,
    JobEvent,
    JobQueueFile,
    JobRecord,
    JobState,
    read_jobs,
)

TICK_S = 1.0  # s between admission cycles (Kueue reacts to events; this is its latency here)
REQUESTS = "requests"  # folder of the CLI's requests, under <state>/jobs
# Ray's final job statuses (ray.job_submission.JobStatus) as the queue's states.
RAY_FINISHED: dict[str, JobState] = {
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "STOPPED": "stopped",
}


def requests_dir(state_dir: Path) -> Path:
    return state_dir / JOBS_DIR / REQUESTS


def write_queue(state_dir: Path, queue: JobQueueFile) -> None:
    path = state_dir / JOBS_DIR / JOB_QUEUE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(queue.model_dump_json(indent=1))
    tmp.replace(path)


def transition(record: JobRecord, state: JobState, reason: str, now: float) -> None:
    """Set a record's state and log the change."""
    record.state, record.reason = state, reason
    record.events.append(JobEvent(t=now, state=state, reason=reason))


def last_line(text: str) -> str:
    """The line of an error that says what went wrong (a traceback's last one)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().strip(".")]
    return lines[-1] if lines else ""


class Controller:
    """One queue over one sandbox's Ray. `client` is Ray's JobSubmissionClient (or a fake)."""

    def __init__(self, state_dir: Path, client: Any, controller_id: str | None = None) -> None:
        self.state_dir = state_dir
        self.client = client
        self.queue = read_jobs(state_dir)
        self.queue.controller = controller_id
        self._last_queued = max((r.queued_at for r in self.queue.jobs.values()), default=0.0)
        requests_dir(state_dir).mkdir(parents=True, exist_ok=True)

    def _enqueue_time(self, now: float) -> float:
        """`now`, but strictly after every job queued before: a job preempted in the same tick
        as its preemptor was queued goes behind it, never ahead (no preemption ping-pong)."""
        self._last_queued = max(now, self._last_queued + 1e-3)
        return self._last_queued

    # ------------------------------------------------------------ requests

    def take_requests(self, now: float) -> None:
        for path in sorted(requests_dir(self.state_dir).glob("*.json")):
            try:
                request = json.loads(path.read_text())
                if request["op"] == "run":
                    self._run(request, now)
                elif request["op"] == "stop":
                    self._stop(request["name"], now)
            except (OSError, ValueError, KeyError) as err:
                print(f"ignored request {path.name}: {err}", flush=True)
            path.unlink(missing_ok=True)

    def _run(self, request: dict[str, Any], now: float) -> None:
        record = JobRecord.model_validate(request["record"])
        self.queue.queues = request["queues"]
        old = self.queue.jobs.get(record.name)
        if old is not None and old.active:
            print(f"job {record.name} is {old.state}: run request ignored", flush=True)
            return
        record.queued_at = self._enqueue_time(now)
        transition(record, "queued", "", now)
        self.queue.jobs[record.name] = record

    def _stop(self, name: str, now: float) -> None:
        record = self.queue.jobs.get(name)
        if record is None or not record.active:
            return
        if record.state == "running" and record.submission_id:
            self.client.stop_job(record.submission_id)
        record.finished_at = now
        transition(record, "stopped", "stopped by `gantry job stop`", now)

    # ------------------------------------------------------------ Ray's side

    def watch_running(self, now: float) -> None:
        for record in self.queue.jobs.values():
            if record.state != "running" or not record.submission_id:
                continue
            if record.started_at and now - record.started_at > record.max_run_s:
                self.client.stop_job(record.submission_id)
                record.finished_at = now
                transition(record, "failed", f"ran past max_run_s ({record.max_run_s} s)", now)
                continue
            try:
                info = self.client.get_job_info(record.submission_id)
            except RuntimeError as err:
                if "status code 404" not in str(err):
                    raise
                # Its Ray job is gone with the Ray it ran on (the sandbox was restarted): queue
                # it again; its run directory, and so its checkpoints, are kept.
                record.queued_at, record.admitted_at = self._enqueue_time(now), None
                transition(record, "queued", "its Ray job was lost with the sandbox's Ray", now)
                continue
            state = RAY_FINISHED.get(str(info.status).rsplit(".", 1)[-1])
            if state is not None:
                record.finished_at = now
                why = last_line(info.message or "") if state == "failed" else ""
                transition(record, state, why, now)

    # ------------------------------------------------------------ admission

    def admit(self, now: float) -> None:
        queues = {
            team: Queue(team, q["nominal"], q["borrowing"]) for team, q in self.queue.queues.items()
        }
        active = [r for r in self.queue.jobs.values() if r.active]
        decision = decide(
            queues,
            [
                Workload(
                    r.name,
                    r.team,
                    r.priority_value,
                    r.requests,
                    r.queued_at,
                    admitted=r.state == "running",
                    admitted_at=r.admitted_at or 0.0,
                )
                for r in active
            ],
        )
        jobs = self.queue.jobs
        for name, why in decision.preempt.items():
            record = jobs[name]
            if record.submission_id:
                self.client.stop_job(record.submission_id)
            record.queued_at, record.admitted_at = self._enqueue_time(now), None
            transition(record, "queued", why, now)
        for name in decision.admit:
            self._submit(jobs[name], now)
        for name, why in decision.waiting.items():
            jobs[name].reason = why

    def _submit(self, record: JobRecord, now: float) -> None:
        record.attempts += 1
        # Unique in Ray's job table, which outlives a cleared queue: `<name>-<run>-<attempt>-<id>`.
        record.submission_id = f"{record.name}-{record.run}-{record.attempts}-{uuid4().hex[:6]}"
        try:
            self.client.submit_job(submission_id=record.submission_id, **record.submit)
        except Exception as err:  # Ray raises RuntimeError with the API's answer
            record.finished_at = now
            transition(record, "failed", f"Ray refused the job: {last_line(str(err))}", now)
            return
        record.admitted_at = now
        record.started_at = record.started_at or now
        resumed = f"attempt {record.attempts}: resumes from its last checkpoint"
        transition(record, "running", resumed if record.attempts > 1 else "", now)

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.take_requests(now)
        self.watch_running(now)
        self.admit(now)
        self.queue.updated_at = now
        write_queue(self.state_dir, self.queue)


def main(argv: list[str]) -> None:
    from ray.job_submission import JobSubmissionClient

    state_dir, dashboard, controller_id = Path(argv[0]), argv[1], argv[2]
    controller = Controller(state_dir, JobSubmissionClient(dashboard), controller_id)
    print(f"job queue {controller_id}: {state_dir}", flush=True)
    while True:
        try:
            controller.tick()
        except Exception as err:  # one failed tick: the next one retries
            print(f"tick failed: {err!r}", flush=True)
        time.sleep(TICK_S)


if __name__ == "__main__":
    main(sys.argv[1:])

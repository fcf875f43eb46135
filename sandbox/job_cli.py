"""`gantry job run|list|logs|stop|render` (registered by gantry/cli.py).

run/list/logs/stop work on the sandbox (sandbox/jobs.py, its queue sandbox/jobqueue.py); render
prints the RayJob a cluster would queue (infra/jobs/; the command is gantry/cli.py's, as the
sandbox never imports infra). Exit codes as gantry/console.py: 0 done,
1 the job ran and failed (or was stopped), 2 fix something first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from gantry.console import console, err_console, fail, load_stack, report
from gantry.errors import EXIT_FAILED, GantryError
from sandbox.cli import Stack, StackFile, StateDir, _paths

job_app = typer.Typer(
    help="Batch and training jobs (jobs/<name>/job.yaml): queued per team by Kueue's rule.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The job: a folder of jobs/, e.g. digits.")]
JobsDir = Annotated[
    Path | None, typer.Option("--jobs-dir", help="Read jobs from this folder instead of jobs/.")
]


def _running(state_dir: Path | None) -> Any:  # -> (Paths, SandboxState)
    from sandbox.lifecycle import running_state

    paths = _paths(state_dir)
    state = running_state(paths)
    if state is None or not state.ready:
        fail("the sandbox is not running", "start it with `gantry sandbox up` (or `make sandbox`)")
    return paths, state


def _overrides(values: list[str]) -> dict[str, Any]:
    out = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key:
            fail(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=3")
        out[key] = yaml.safe_load(value)
    return out


@job_app.command()
def run(
    name: Name,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key of the job's config: KEY=VALUE (repeatable)."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--detach",
            help="Show the job's progress until it ends (default), or return once it is queued.",
        ),
    ] = True,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="With --follow: give up after this many seconds.")
    ] = 3600,
    stack: Stack = "sandbox",
    stack_file: StackFile = None,
    state_dir: StateDir = None,
    jobs_dir: JobsDir = None,
) -> None:
    """Queue a job in the sandbox; it runs when its team's quota (or the cohort's idle quota)
    has room, higher priority first, and shows its progress."""
    from gantry.jobs import load_job, runtime_config
    from sandbox import jobs

    cfg = load_stack(stack, stack_file)
    try:  # the job and its overrides first: a bad file is named even with no sandbox running
        job = load_job(name, cfg, jobs_dir)
        config = runtime_config(job, _overrides(set_ or []))
    except GantryError as err:
        report(err)
    paths, state = _running(state_dir)
    try:
        rec = jobs.record(job, cfg, paths.root, config)
        jobs.ensure_controller(state, jobs.client(state))
        jobs.enqueue(paths.root, rec, cfg)
        console.print(f"job [bold]{name}[/] run {rec.run} queued (team {job.team}, {job.priority})")
        if follow:
            _follow(paths.root, state, name, rec.run, timeout_s)
    except GantryError as err:
        report(err)
    except KeyboardInterrupt:
        # Only the watching stops: the job is the queue's (`gantry job stop` stops it).
        console.print(f"stopped watching; job {name} goes on (`gantry job list`, `job logs`)")


def _follow(state_dir: Path, state: Any, name: str, run: int, timeout_s: float) -> None:
    """Print each state change and the job's log lines until it ends."""
    from gantry.sandbox_state import read_jobs
    from sandbox import jobs

    client = jobs.client(state)
    seen_events, said = 0, ""
    log_at: dict[str, int] = {}  # log characters printed, per Ray submission
    deadline = time.monotonic() + timeout_s
    while True:
        if time.monotonic() > deadline:
            fail(f"job {name} did not end within {timeout_s:g} s", code=EXIT_FAILED)
        queue = read_jobs(state_dir)
        if time.time() - queue.updated_at > jobs.CONTROLLER_STALE_S:
            jobs.ensure_controller(state, client)  # it died: a new one takes over the queue
        rec = queue.jobs.get(name)
        if rec is None or rec.run != run:
            time.sleep(jobs.POLL_S)  # the controller has not taken the request yet
            continue
        for e in rec.events[seen_events:]:
            why = f": {e.reason}" if e.reason else ""
            console.print(f"[bold]{name}[/] {e.state}{why}")
        seen_events = len(rec.events)
        if rec.state == "queued" and rec.reason and rec.reason != said:
            said = rec.reason
            err_console.print(f"  {said}", style="dim", soft_wrap=True)
        sid = rec.submission_id
        if sid and rec.state != "queued":
            text = client.get_job_logs(sid)
            for line in text[log_at.get(sid, 0) :].splitlines():
                console.print(f"  [dim]|[/] {line}", highlight=False, soft_wrap=True)
            log_at[sid] = len(text)
        if not rec.active:
            took = (rec.finished_at or 0) - (rec.started_at or rec.queued_at)
            if rec.state != "succeeded":
                fail(f"job {name} {rec.state} after {took:.0f} s", code=EXIT_FAILED)
            console.print(f"[green]✓[/] job {name} succeeded in {took:.0f} s ({rec.run_dir})")
            return
        time.sleep(1)


@job_app.command("list")
def list_(state_dir: StateDir = None) -> None:
    """Queued, running and finished jobs, with why each waits."""
    from gantry.sandbox_state import read_jobs

    queue = read_jobs(_paths(state_dir).root)
    if not queue.jobs:
        console.print("No jobs yet: `gantry job run NAME` queues one.")
        return
    table = Table(title="Gantry jobs (sandbox)", title_justify="left")
    for col in ("job", "team", "state", "run.try", "since"):
        table.add_column(col, no_wrap=True)
    now = time.time()
    jobs = sorted(queue.jobs.values(), key=lambda r: (not r.active, r.queued_at))
    for r in jobs:
        since = r.events[-1].t if r.events else r.queued_at
        table.add_row(
            r.name,
            r.team,
            r.state,
            f"{r.run}.{r.attempts}",
            f"{now - since:.0f} s ago",
        )
    console.print(table)
    for r in jobs:  # below the table: a reason is a sentence, too long for a column
        if r.reason:
            console.print(f"[bold]{r.name}[/]: {r.reason}", highlight=False)


@job_app.command()
def logs(name: Name, state_dir: StateDir = None) -> None:
    """The job's output (its latest attempt)."""
    from gantry.sandbox_state import read_jobs
    from sandbox import jobs

    paths, state = _running(state_dir)
    rec = read_jobs(paths.root).jobs.get(name)
    if rec is None or rec.submission_id is None:
        fail(f"job {name} has not run yet", "`gantry job list` shows why it waits")
    typer.echo(jobs.client(state).get_job_logs(rec.submission_id), nl=False)


@job_app.command()
def stop(name: Name, state_dir: StateDir = None) -> None:
    """Stop a queued or running job (its checkpoints stay in its run directory)."""
    from sandbox import jobs

    paths, _ = _running(state_dir)
    try:
        jobs.request_stop(paths.root, name)
        jobs.wait_for(paths.root, name, lambda r: not r.active, 60)
    except GantryError as err:
        report(err)
    console.print(f"job {name} stopped")


def register(app: typer.Typer, render: Callable[..., None]) -> None:
    """`gantry job`; `render` is the core CLI's (it prints a cluster's RayJob: infra's side)."""
    job_app.command("render")(render)
    app.add_typer(job_app, name="job")

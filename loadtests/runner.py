"""Run a scenario: resolve the target, check it answers, run Locust in its own process, observe
the platform, start the rollout on time, then evaluate and report.

Bounded: Locust stops when the shape ends, and this process kills it `GRACE_S` later at the
latest; the observation tail ends at `tail_s`. A dead target is reported before any load; one
that starts failing mid-run is stopped by the Locust process's watchdog (`abort.json`).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from gantry.errors import PrerequisiteError
from gantry.jobs import RESULT_FILE
from gantry.sandbox_state import JobRecord, SandboxState, read_jobs, read_state
from gantry.service import load_service
from loadtests import payloads
from loadtests.expectations import JobFacts, RunFacts, evaluate
from loadtests.observers import NullObserver, Observer, Sampler, SandboxObserver
from loadtests.report import JobSpan, Summary, plot_timeline, write_summary
from loadtests.scenario import SANDBOX, RunSpec, Scenario
from loadtests.timeline import LoadPoint, PlatformPoint, merge, read_points, write_timeline

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# Longest Locust may run past the shape's end before it is killed (s).
GRACE_S = 30.0
# Longest `gantry sandbox fault` may take (s): it asks Ray's API (retried) and kills by PID.
FAULT_TIMEOUT_S = 60.0
# Longest `gantry job run --detach` may take (s): the first one starts the queue's controller.
JOB_SUBMIT_TIMEOUT_S = 60.0


class TargetError(PrerequisiteError):
    """The target cannot be load-tested (not running, not answering, answering wrongly)."""


@dataclass
class Target:
    host: str  # base URL of the service, route prefix included
    observer: Observer
    rollout_cmd: list[str] | None = None  # argv; the version is appended as `--to <v>`
    fault_cmd: list[str] | None = None  # argv; the fault's kind and target are appended
    job_cmd: list[str] | None = None  # argv; the job's name and --set options are appended
    state_dir: Path | None = None  # the sandbox's, whose job queue the run reads
    n_features: int = 4


def preflight(service: str, host: str, n_features: int, timeout_s: float = 30.0) -> None:
    """One small real request before any load: a dead or broken target ends the run here."""
    if service == "embedder":
        body: dict[str, Any] = {"input": "Gantry preflight request.", "model": "embedder"}
        path, check = payloads.EMBED_PATH, payloads.check_embeddings
    else:
        body = {"instances": [[1.0] * n_features]}
        path, check = payloads.PREDICT_PATH, payloads.check_predictions
    try:
        resp = requests.post(host + path, json=body, timeout=timeout_s)
    except requests.RequestException as err:
        raise TargetError(f"{host}{path} is not answering: {type(err).__name__}: {err}") from None
    problem = check(body, resp.status_code, resp.text)
    if problem:
        raise TargetError(f"{host}{path} answers but not correctly: {problem}")


def _locust_argv(spec: RunSpec, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", spec.host]
    if spec.ui:
        return [*argv, "--web-host", "127.0.0.1"]
    run_time = int(spec.scenario.shape.duration_s + GRACE_S / 2)
    return [
        *argv,
        "--headless",
        "--run-time",
        f"{run_time}s",
        "--stop-timeout",
        "5",
        "--csv",
        str(out / "locust"),
        "--html",
        str(out / "locust.html"),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]


def _spawn_locust(spec: RunSpec, out: Path, log: Path | None) -> subprocess.Popen[bytes]:
    (out / "run.json").write_text(spec.model_dump_json(indent=2))
    env = {**os.environ, "GANTRY_LOADTEST_RUN": str(out / "run.json")}
    # gevent's monkey-patching must not meet ray/requests: a fresh interpreter, nothing inherited.
    env.pop("PYTHONSTARTUP", None)
    stdout = log.open("ab") if log else None
    try:
        return subprocess.Popen(
            _locust_argv(spec, out),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT if log else None,
            start_new_session=log is not None,  # headless: our Ctrl-C handling stops it
        )
    finally:
        if stdout is not None:
            stdout.close()  # the child has its own copy


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, wait_s: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_ui(scenario: Scenario, target: Target, out: Path) -> int:
    """Locust's web UI on 127.0.0.1:8089 with the scenario's user and target; Ctrl-C ends it."""
    out.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(
        scenario=scenario, host=target.host, out_dir=str(out), ui=True, n_features=target.n_features
    )
    proc = _spawn_locust(spec, out, log=None)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop(proc)
        return 0


def run(scenario: Scenario, target: Target, out: Path, console: Console | None = None) -> Summary:
    """Run `scenario` against `target`, write the report into `out`, return its summary."""
    preflight(scenario.service, target.host, target.n_features)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("load.jsonl", "platform.jsonl", "abort.json", "started.json", "stop",
                  "fault.json"):  # fmt: skip
        (out / stale).unlink(missing_ok=True)
    return _Run(scenario, target, out).execute(console or Console())


class _Run:
    """One run's moving parts, advanced twice a second by `step()` until `step()` says done."""

    def __init__(self, scenario: Scenario, target: Target, out: Path) -> None:
        self.scenario, self.target, self.out = scenario, target, out
        self.spec = RunSpec(
            scenario=scenario,
            host=target.host,
            out_dir=str(out),
            n_features=target.n_features,
            request_timeout_s=load_service(scenario.service).request_timeout_s,
        )
        self.started = time.time()
        self.aborted: str | None = None
        self.baseline: int | None = None  # replicas at the first good observer sample
        self.rollout: subprocess.Popen[bytes] | None = None
        self.rollout_at: float | None = None  # s after the load started
        self.rollout_end: float | None = None  # epoch s
        self.fault_at: float | None = None  # s after the load started
        self.fault_hit: dict[str, Any] | None = None  # what `gantry sandbox fault` hit
        self.jobs_at: dict[str, float] = {}  # job -> s after the load started it was queued
        self.tail_from: float | None = None  # epoch s the load ended

    def execute(self, console: Console) -> Summary:
        self.sampler = Sampler(self.target.observer, self.out / "platform.jsonl").start()
        self.locust = _spawn_locust(self.spec, self.out, log=self.out / "locust.log")
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=True,
        )
        try:
            with progress:
                task = progress.add_task("load", total=self.scenario.planned_s, status="starting")
                while not self.step():
                    t = min(time.time() - _t0(self.out, self.started), self.scenario.planned_s)
                    status = _status(self.out, self.sampler.latest)
                    description = "load" if self.tail_from is None else "observing"
                    progress.update(task, completed=t, status=status, description=description)
                    time.sleep(0.5)
        except KeyboardInterrupt:
            self.aborted = "interrupted (Ctrl-C)"
        finally:
            _stop(self.locust)
            if self.rollout is not None:
                _stop(self.rollout, wait_s=30)  # the driver leaves a consistent state on SIGINT
            self.sampler.stop()
        return _finish(self)

    def step(self) -> bool:
        """Advance the run; True once it is over."""
        now = time.time()
        latest = self.sampler.latest
        if self.baseline is None and latest is not None and latest.error is None:
            self.baseline = sum(latest.replicas.values())
        self._drive_rollout(now)
        self._inject_fault(now)
        self._queue_jobs(now)
        if (self.out / "abort.json").exists():
            self.aborted = json.loads((self.out / "abort.json").read_text())["reason"]
        if self.locust.poll() is None:
            if now - self.started > self.scenario.shape.duration_s + GRACE_S:
                self.aborted = self.aborted or f"Locust still ran {GRACE_S:g} s after the shape"
                _stop(self.locust, signal.SIGKILL)
            return False
        if self.aborted:
            return True
        self.tail_from = self.tail_from or now
        return now - self.tail_from >= self.scenario.tail_s or self._settled(latest)

    def _drive_rollout(self, now: float) -> None:
        """Start the rollout on time; end the load `end_load_after_s` after it finished."""
        rollout = self.scenario.rollout
        if rollout is None or self.target.rollout_cmd is None:
            return
        t = now - _t0(self.out, self.started)
        if self.rollout is None:
            if t >= rollout.at_s and self.locust.poll() is None:
                self.rollout_at = t
                self.rollout = _start_rollout(self.target.rollout_cmd, self.scenario, self.out)
            return
        if self.rollout.poll() is None:
            return
        self.rollout_end = self.rollout_end or now
        wait = rollout.end_load_after_s
        if wait is not None and now - self.rollout_end >= wait:
            (self.out / "stop").touch()  # the shape ends at its next tick

    def _inject_fault(self, now: float) -> None:
        """Inject the scenario's fault once, on time; a fault that could not be injected ends
        the run (a chaos scenario without its fault proves nothing)."""
        fault = self.scenario.fault
        if fault is None or self.fault_at is not None or self.locust.poll() is not None:
            return
        t = now - _t0(self.out, self.started)
        if t < fault.at_s:
            return
        self.fault_at = t
        if self.target.fault_cmd is None:
            self._abort(f"the target cannot inject a {fault.kind} fault (the sandbox can)")
            return
        target = fault.target or (self.scenario.service if fault.kind == "replica-kill" else "")
        argv = [*self.target.fault_cmd, fault.kind, *([target] if target else [])]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=FAULT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._abort(f"the {fault.kind} fault did not finish within {FAULT_TIMEOUT_S:g} s")
            return
        if done.returncode:
            self._abort(f"the {fault.kind} fault failed: {done.stderr.strip()[-300:]}")
            return
        self.fault_hit = json.loads(done.stdout.strip().splitlines()[-1])
        (self.out / "fault.json").write_text(
            json.dumps({"at_s": round(t, 1), **self.fault_hit}) + "\n"
        )

    def _queue_jobs(self, now: float) -> None:
        """Queue each of the scenario's jobs once, on time (`gantry job run --detach`)."""
        t = now - _t0(self.out, self.started)
        for step in self.scenario.jobs:
            if step.name in self.jobs_at or t < step.at_s or self.locust.poll() is not None:
                continue
            self.jobs_at[step.name] = t
            if self.target.job_cmd is None:
                self._abort(f"the target cannot run job {step.name} (the sandbox can)")
                return
            sets = [f"--set={k}={json.dumps(v)}" for k, v in step.set.items()]
            argv = [*self.target.job_cmd, step.name, *sets]
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=JOB_SUBMIT_TIMEOUT_S
                )
            except subprocess.TimeoutExpired:
                self._abort(f"job {step.name} was not queued within {JOB_SUBMIT_TIMEOUT_S:g} s")
                return
            if done.returncode:
                self._abort(f"job {step.name} was not queued: {done.stderr.strip()[-300:]}")
                return

    def _jobs_active(self) -> bool:
        jobs = _job_records(self.target.state_dir)
        return any(name in jobs and jobs[name].active for name in self.jobs_at)

    def _abort(self, reason: str) -> None:
        self.aborted = reason
        (self.out / "stop").touch()  # the shape ends at its next tick

    def _settled(self, latest: PlatformPoint | None) -> bool:
        """Nothing left to watch: the rollout is over and seen, replicas are back if asked."""
        if latest is None or latest.error is not None:
            return False
        if self._jobs_active():
            return False
        if self.rollout is not None and (self.rollout_end is None or latest.ts <= self.rollout_end):
            return False  # a sample taken after the rollout ended carries its final phase
        if self.scenario.expectations.scale_in_within_s is None:
            return True
        return self.baseline is not None and sum(latest.replicas.values()) <= self.baseline


def _t0(out: Path, fallback: float) -> float:
    try:
        return float(json.loads((out / "started.json").read_text())["ts"])
    except (FileNotFoundError, ValueError, KeyError):
        return fallback


def _status(out: Path, latest: PlatformPoint | None) -> str:
    points = read_points(out / "load.jsonl", LoadPoint)[-1:]
    parts = []
    if points:
        p = points[0]
        p99 = f"{p.p99_ms:.0f} ms" if p.p99_ms is not None else "—"
        parts.append(f"users {p.users} · {p.requests} req/s · {p.failures} failed/s · p99 {p99}")
    if latest is not None and latest.error is None:
        parts.append(f"replicas {dict(latest.replicas)}")
        if latest.phase:
            parts.append(f"rollout {latest.phase}")
    return " · ".join(parts)


def _start_rollout(cmd: list[str], scenario: Scenario, out: Path) -> subprocess.Popen[bytes]:
    assert scenario.rollout is not None
    argv = [*cmd, "--to", scenario.rollout.to]
    if scenario.rollout.user_config:
        argv += ["--user-config", json.dumps(scenario.rollout.user_config)]
    with (out / "rollout.log").open("ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )


def _finish(run: _Run) -> Summary:
    scenario, out = run.scenario, run.out
    load = read_points(out / "load.jsonl", LoadPoint)
    platform = read_points(out / "platform.jsonl", PlatformPoint)
    t0 = _t0(out, run.started)
    samples = merge(load, platform, t0)
    write_timeline(out / "timeline.jsonl", samples)
    requests = sum(p.requests for p in load)
    failures = sum(p.failures for p in load)
    slo_p99_ms = load_service(scenario.service).slo.p99_latency_ms
    facts = RunFacts(
        requests=requests,
        failure_errors=_locust_failures(out / "locust_failures.csv"),
        max_latency_ms=_locust_max_ms(out / "locust_stats.csv"),
        fault_at_s=run.fault_at,
        replica_deaths=(
            None
            if scenario.expectations.replica_deaths is None
            else run.target.observer.replica_deaths()
        ),
        jobs=_job_facts(run.target.state_dir, list(run.jobs_at)),
    )
    checks = evaluate(scenario.expectations, samples, failures, slo_p99_ms, facts)
    aborted = run.aborted or (None if requests else "no request completed")
    summary = Summary(
        scenario=scenario.name,
        service=scenario.service,
        target=run.target.host,
        observer=run.target.observer.name,
        passed=aborted is None and all(c.passed for c in checks),
        aborted=aborted,
        duration_s=round(time.time() - t0, 1),
        requests=requests,
        failures=failures,
        checks=checks,
        rollout_started_at_s=None if run.rollout_at is None else round(run.rollout_at, 1),
        rollout_exit=None if run.rollout is None else run.rollout.returncode,
        fault_at_s=None if run.fault_at is None else round(run.fault_at, 1),
        fault=run.fault_hit,
    )
    plot_timeline(
        out / "timeline.png",
        samples,
        title=f"{scenario.name}: {'PASSED' if summary.passed else 'FAILED'}",
        slo_p99_ms=slo_p99_ms,
        rollout_at_s=summary.rollout_started_at_s,
        fault=(run.fault_at, scenario.fault.kind) if scenario.fault and run.fault_at else None,
        jobs=_job_spans(run.target.state_dir, list(run.jobs_at), t0),
    )
    reports = ("timeline.png", "timeline.jsonl", "locust.html", "locust_stats.csv",
               "locust_failures.csv", "rollout.log", "fault.json")  # fmt: skip
    summary.files = {name: str(out / name) for name in reports if (out / name).exists()}
    write_summary(out, summary)
    return summary


def _job_records(state_dir: Path | None) -> dict[str, JobRecord]:
    return read_jobs(state_dir).jobs if state_dir is not None else {}


def _job_facts(state_dir: Path | None, names: list[str]) -> dict[str, JobFacts]:
    """How each of the run's jobs went: the queue's record and the job's own result file."""
    facts = {}
    for name, rec in _job_records(state_dir).items():
        if name not in names:
            continue
        try:
            result = json.loads((Path(rec.run_dir) / RESULT_FILE).read_text())
        except (OSError, ValueError):
            result = {}
        preempted = [e for e in rec.events if e.reason.startswith("preempted")]
        facts[name] = JobFacts(
            state=rec.state, preemptions=len(preempted), attempts=rec.attempts, result=result
        )
    return facts


def _job_spans(state_dir: Path | None, names: list[str], t0: float) -> dict[str, list[JobSpan]]:
    """Each of the run's jobs as spans of one state, in s since the load started."""
    spans: dict[str, list[JobSpan]] = {}
    records = _job_records(state_dir)
    for name in names:
        rec = records.get(name)
        if rec is None:
            continue
        ends = [e.t for e in rec.events[1:]] + [rec.finished_at or time.time()]
        spans[name] = [
            JobSpan(e.t - t0, end - t0, e.state, e.reason)
            for e, end in zip(rec.events, ends, strict=True)
        ]
    return spans


def _locust_failures(path: Path) -> dict[str, int]:
    """Locust's failures file: each distinct failure message and how often it occurred."""
    try:
        with path.open(newline="") as f:
            return {row["Error"]: int(row["Occurrences"]) for row in csv.DictReader(f)}
    except (FileNotFoundError, KeyError, ValueError):
        return {}


def _locust_max_ms(path: Path) -> float | None:
    """The slowest request of the run (Locust's `Aggregated` row), in ms."""
    try:
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
        return float(rows[0]["Max Response Time"]) if rows else None
    except (FileNotFoundError, KeyError, ValueError):
        return None


def resolve_target(
    scenario: Scenario, cli_target: str | None, state_dir: Path, stack_file: Path | None = None
) -> Target:
    """The URL to load and the observer that matches it (sandbox, Kubernetes, or none)."""
    sandbox = _sandbox_state(state_dir)
    url = cli_target or scenario.target
    if url == SANDBOX and (sandbox is None or not sandbox.ready):
        raise TargetError("no sandbox is running (run `gantry sandbox up`), or pass --target URL")
    if sandbox is not None and (url == SANDBOX or _same_origin(url, sandbox.urls["serve"])):
        if scenario.service not in sandbox.routes:
            raise TargetError(f"the sandbox does not run {scenario.service!r}")
        rollout = [sys.executable, "-c", "from gantry.cli import main; main()", "rollout",
                   scenario.service, "--state-dir", str(state_dir)]  # fmt: skip
        if stack_file is not None:
            rollout += ["--stack-file", str(stack_file)]
        fault = [sys.executable, "-c", "from gantry.cli import main; main()", "sandbox", "fault",
                 "--state-dir", str(state_dir)]  # fmt: skip
        job = [sys.executable, "-c", "from gantry.cli import main; main()", "job", "run",
               "--detach", "--state-dir", str(state_dir)]  # fmt: skip
        if stack_file is not None:
            job += ["--stack-file", str(stack_file)]
        return Target(
            host=sandbox.routes[scenario.service].rstrip("/"),
            observer=SandboxObserver(sandbox, scenario.service, state_dir),
            rollout_cmd=rollout,
            fault_cmd=fault,
            job_cmd=job,
            state_dir=state_dir,
        )
    return Target(host=url.rstrip("/"), observer=_cluster_observer(scenario))


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.hostname, pa.port) == (pb.hostname, pb.port)


def _sandbox_state(state_dir: Path) -> SandboxState | None:
    return read_state(state_dir)


def _cluster_observer(scenario: Scenario) -> Observer:
    try:
        from kubernetes import config

        config.load_kube_config()
    except Exception as err:
        return NullObserver(f"no Kubernetes API: {type(err).__name__}")
    from loadtests.observers import KubernetesObserver

    return KubernetesObserver(scenario.service, scenario.namespace or _team(scenario.service))


def _team(service: str) -> str:
    """The service's namespace on a cluster: its team in services/<name>/service.yaml."""
    path = Path(__file__).parents[1] / "services" / service / "service.yaml"
    return str(yaml.safe_load(path.read_text()).get("team", "default"))

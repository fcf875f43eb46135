"""Gantry's rollout driver: the sandbox's Flagger, a ticker around `gantry.canary.advance`.

`gantry rollout <service> --to <version>` follows the service's `canary` block
(services/<name>/service.yaml, the block the cluster's Flagger Canary is rendered from). What the
policy does (phases, when to step, count a failure, promote or roll back, pause) is
`gantry.canary.advance`; this module performs its actions on the sandbox (`SandboxEngine`):

- INITIALIZE: deploy the canary version as its own Serve application `<service>-<version>` at
  weight 0 and wait for it; the smoke webhook (one real request straight to the canary must
  answer 2xx, else roll back); then wait until Prometheus scrapes the canary's replicas (a new
  pool node's exporter is slow, and checks before that would fail for no fault of the canary's);
- SET_WEIGHT: the canary's weight at the gateway, changed in place (sandbox/gateway.py);
  PROMOTE: 100 %;
- RUN_CHECKS: each metric check as PromQL (sandbox/analysis.py; no data fails, and so does a
  query that still fails after its retries), while the load webhook sends traffic straight to
  the canary (from the first step until the analysis ends);
- FINALISE: the canary becomes the stable version and the old version's application is removed;
- ROLL_BACK: 0 % to the canary, then its application is removed.
An application is only removed once the gateway stopped sending it traffic (`DRAIN_S`), so no
request is dropped. Every call to Ray's dashboard and Prometheus retries a transient failure (a
500 while it is busy, a reset connection: sandbox/retry.py), so a blip neither ends the rollout
nor, through a check, counts against the canary unless it outlasts the retries; an error that
reaches the ticker rolls back.

Resume: after each action the driver saves the status atomically to
`<state>/rollouts/<service>.status.json` (beside `routing.json`). Every action is idempotent, so
a driver killed anywhere is resumed by running `gantry rollout <service>` again (`--to` may
repeat the same version): it reloads the status, puts the canary's weight back to the saved one
and carries on, performing the interrupted action again. One driver per service holds
`<service>.lock` (released by the kernel when it dies), so a second one refuses to start;
`--detach` runs the same ticker in the background. A status saved before the sandbox was last
started, or one `routing.json` contradicts, is stale and ignored.

Pause: `gantry rollout <service> --pause` creates `<service>.paused`, which the ticker reads
every `POLL_S`; the policy then holds the weight and counts nothing until `--resume`.

Abort: Ctrl-C (or SIGTERM) rolls back (traffic back to the stable version at 100 %, the canary's
application removed), uninterruptibly, then the command exits 130. `gantry rollout <service>
--abort` does the same from outside: it sends the running driver SIGTERM, or, when none runs,
rolls back what a killed one left.

Every step goes to a JSONL event log (`<state>/rollouts/<service>.jsonl`) and to the terminal:
`start`, `takeover`, `canary_ready`, `smoke`, `metrics_visible`, `weight`, `check`, `paused`,
`resumed`, then `promoted`, `rolled_back` (with the reason), `aborted` or `error`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from gantry import canary
from gantry.canary import Action, CanaryStatus, CheckResult, Do, Outcome, Phase
from gantry.errors import GantryError
from gantry.sandbox_state import SandboxState, ServiceRouting
from gantry.service import Canary
from sandbox.canary_engine import SandboxEngine
from sandbox.errors import SandboxError
from sandbox.lifecycle import Plan
from sandbox.retry import Clock
from sandbox.rollout_files import Emit, EventLog, RolloutFiles
from sandbox.state import Paths

# Longest sleep between two ticks: a pause or resume is noticed within it.
POLL_S = 1.0
# Seconds `--abort` waits for a running driver to roll back and exit.
ABORT_WAIT_S = 300.0
# The load webhook runs while the canary is analysed (not while paused, nor once a rollback is
# asked for).
LOADED_PHASES = {Phase.PROGRESSING}
# What the network raises when the sandbox does not answer (requests' errors are OSErrors): an
# expected failure, shown as one line.
_SANDBOX_FAILURES = (OSError,)


class Aborted(Exception):
    """SIGTERM during a rollout."""


# ---------------------------------------------------------------- the engine


class Engine(Protocol):
    """What the driver needs from the platform; every action idempotent."""

    def current(self) -> ServiceRouting:
        """Which versions run now and at what weight."""
        ...

    def matches(self, status: CanaryStatus) -> bool:
        """Whether the platform runs what an unfinished `status` says (else it is stale)."""
        ...

    def restore(self, status: CanaryStatus) -> None:
        """Put the canary's weight back to the status' (a driver killed after changing it)."""
        ...

    def initialize(self, status: CanaryStatus) -> str | None:
        """Deploy the canary at 0 %, wait for it, run the pre-rollout hooks; a reason to roll
        back if one failed."""
        ...

    def set_weight(self, weight: int) -> None: ...

    def run_checks(self, status: CanaryStatus) -> list[CheckResult]: ...

    def promote(self, status: CanaryStatus) -> None: ...

    def finalise(self, status: CanaryStatus) -> None: ...

    def roll_back(self, status: CanaryStatus, reason: str) -> None: ...

    def load(self, on: bool, status: CanaryStatus) -> None:
        """Start or stop the load webhook (no-op when already so)."""
        ...


# ---------------------------------------------------------------- the ticker


class Driver:
    """One service's rollout: the ticker around `gantry.canary.advance`."""

    def __init__(
        self,
        service: str,
        policy: Canary,
        engine: Engine,
        files: RolloutFiles,
        log: EventLog,
        clock: Clock | None = None,
    ) -> None:
        self.service, self.policy, self.engine = service, policy, engine
        self.files, self.log = files, log
        self.clock = clock or Clock()
        self.status: CanaryStatus | None = None  # the last one saved

    # ------------------------------------------------------------------ entry points

    def run(self, to: str | None, canary_config: dict[str, Any] | None = None) -> Outcome:
        """Roll out `to`, or resume the unfinished rollout (`to` None or the same version)."""
        with self.files.locked():
            status = self._unfinished()
            if status is None:
                status = self._start(to, canary_config)
            else:
                self._take_over(status, to, canary_config)
            return self._drive(status)

    def abort(self) -> Outcome:
        """Roll back: the running driver (sent SIGTERM), or what a killed one left."""
        pid = self.files.driver_pid()
        if pid is not None:
            # It holds the lock, so it is alive and it is that driver (not a recycled PID).
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = self.clock.now() + ABORT_WAIT_S
            while self.files.driver_pid() is not None:
                if self.clock.now() > deadline:
                    raise SandboxError(f"the rollout driver (pid {pid}) did not stop")
                self.clock.sleep(0.5)
        with self.files.locked():
            status = self._unfinished()
            if status is None:
                r = self.engine.current()
                if r.canary is None:
                    return Outcome.ROLLED_BACK  # nothing to restore
                # A canary with no status (left by a driver older than the status file).
                status = canary.start(r.stable, r.canary, self.clock.now())
            return self._drive(canary.request_rollback(status, "--abort"))

    # ------------------------------------------------------------------ starting, resuming

    def _unfinished(self) -> CanaryStatus | None:
        saved = self.files.load()
        if saved is None or saved.phase.done or not self.engine.matches(saved):
            return None
        return saved

    def _start(self, to: str | None, canary_config: dict[str, Any] | None) -> CanaryStatus:
        name = self.service
        if to is None:
            raise SandboxError(
                f"{name} has no unfinished rollout to resume",
                f"start one: gantry rollout {name} --to <version>",
            )
        current = self.engine.current()
        if current.canary:
            raise SandboxError(
                f"{name} already has a canary ({current.canary} at {current.canary_weight} %)",
                f"restore the stable version: gantry rollout {name} --abort",
            )
        if to == current.stable:
            raise SandboxError(f"{name} already serves {to}")
        self.files.pause.unlink(missing_ok=True)  # a pause asked for an earlier rollout
        status = canary.start(current.stable, to, self.clock.now(), canary_config)
        self.log(
            "start",
            service=name,
            stable=status.stable,
            canary=to,
            interval_s=self.policy.interval_s,
            threshold=self.policy.threshold,
            steps=self.policy.steps,
            user_config=status.canary_config,
        )
        self.files.save(status)
        return status

    def _take_over(
        self, status: CanaryStatus, to: str | None, canary_config: dict[str, Any] | None
    ) -> None:
        name = self.service
        if to is not None and to != status.canary:
            raise SandboxError(
                f"{name} has an unfinished rollout to {status.canary} "
                f"({status.phase}, {status.canary_weight} %)",
                f"resume it: gantry rollout {name}; or roll it back: gantry rollout {name} --abort",
            )
        if canary_config is not None and canary_config != status.canary_config:
            raise SandboxError(
                f"the unfinished rollout of {name} to {status.canary} runs with user_config "
                f"{json.dumps(status.canary_config)}",
                f"resume it without --user-config, or roll it back: gantry rollout {name} --abort",
            )
        self.log(
            "takeover",
            phase=status.phase.value,
            canary=status.canary,
            canary_weight=status.canary_weight,
            failed_checks=status.failed_checks,
            pid=os.getpid(),
        )
        self.engine.restore(status)

    # ------------------------------------------------------------------ ticking

    def _drive(self, status: CanaryStatus) -> Outcome:
        try:
            with _sigterm_aborts():
                return self._ticks(status)
        except (KeyboardInterrupt, Aborted):
            self.log("aborted", reason="interrupted (Ctrl-C/SIGTERM)")
            with _uninterruptible():  # finish the restore even if Ctrl-C is pressed again
                self._ticks(canary.request_rollback(self._saved(status), "aborted"))
            return Outcome.ABORTED
        except Exception as err:
            self.log("error", message=str(err))
            try:
                ended = self._ticks(canary.request_rollback(self._saved(status), f"error: {err}"))
                hint = f"the rollout ended: {ended}"
            except Exception as again:
                self.log("error", message=f"the rollback failed too: {again}")
                hint = f"finish it: gantry rollout {self.service} --abort"
            if isinstance(err, GantryError) or not isinstance(err, _SANDBOX_FAILURES):
                raise  # a GantryError already says it; anything else is a bug: its traceback
            raise SandboxError(f"the rollout failed: {err}", hint) from err
        finally:
            self.engine.load(False, self._saved(status))

    def _saved(self, fallback: CanaryStatus) -> CanaryStatus:
        return self.status or fallback

    def _save(self, status: CanaryStatus) -> None:
        if status != self.status:
            self.files.save(status)
            self.status = status

    def _ticks(self, status: CanaryStatus) -> Outcome:
        """Tick until the rollout is over: advance, perform the action, save the status."""
        self._save(status)
        while not status.phase.done:
            status = self._sync_pause(status)
            now = self.clock.now()
            new, action = canary.advance(self.policy, status, None, now)
            if action.do is Do.RUN_CHECKS:
                results = self.engine.run_checks(status)
                new, action = canary.advance(self.policy, status, results, now)
                self.log(
                    "check",
                    canary_weight=status.canary_weight,
                    passed=canary.all_passed(self.policy, results),
                    results=[_result(r) for r in results],
                )
            self.engine.load(new.phase in LOADED_PHASES and new.reason is None, new)
            if action.do is Do.WAIT:
                self._save(new)
                left = POLL_S if action.until is None else action.until - self.clock.now()
                self.clock.sleep(max(0.0, min(POLL_S, left)))
            else:
                problem = self._perform(action, new)
                if problem is not None:
                    new = canary.request_rollback(new, problem)
                self._save(new)
            status = new
        self.files.pause.unlink(missing_ok=True)
        outcome = status.outcome
        assert outcome is not None
        return outcome

    def _sync_pause(self, status: CanaryStatus) -> CanaryStatus:
        wanted = self.files.pause_requested()
        if wanted == status.paused:
            return status
        status = canary.set_paused(status, wanted)
        self.log("paused" if wanted else "resumed", canary_weight=status.canary_weight)
        self._save(status)
        return status

    def _perform(self, action: Action, status: CanaryStatus) -> str | None:
        """Do `action`; a reason to roll back if a pre-rollout hook failed."""
        e = self.engine
        if action.do is Do.INITIALIZE:
            return e.initialize(status)
        elif action.do is Do.SET_WEIGHT:
            assert action.weight is not None
            e.set_weight(action.weight)
        elif action.do is Do.PROMOTE:
            e.promote(status)
        elif action.do is Do.FINALISE:
            e.finalise(status)
        elif action.do is Do.ROLL_BACK:
            e.roll_back(status, action.reason or "rolled back")
        return None


@contextlib.contextmanager
def _sigterm_aborts() -> Iterator[None]:
    """SIGTERM raises `Aborted` (as Ctrl-C raises KeyboardInterrupt); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _abort(*_: object) -> None:
        raise Aborted()

    previous = signal.signal(signal.SIGTERM, _abort)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _result(r: CheckResult) -> dict[str, Any]:
    out = {"name": r.name, "value": r.value, "min": r.min, "max": r.max, "passed": r.passed}
    return {**out, "detail": r.detail} if r.detail else out


# ---------------------------------------------------------------- for the CLI


def sandbox_driver(
    plan: Plan,
    paths: Paths,
    state: SandboxState,
    service: str,
    printer: Emit,
    clock: Clock | None = None,
) -> Driver:
    """The driver of one service of a running sandbox."""
    if service not in plan.specs:
        raise SandboxError(f"unknown service {service!r}; services: {sorted(plan.specs)}")
    spec = plan.specs[service]
    clock = clock or Clock()
    files = RolloutFiles(paths.rollouts, service)
    log = EventLog(files.events, printer)
    engine = SandboxEngine(plan, paths, state, spec, log, clock)
    return Driver(service, spec.canary, engine, files, log, clock)


def request_pause(paths: Paths, service: str, paused: bool) -> CanaryStatus:
    """Ask the driver to pause (or resume) the service's unfinished rollout."""
    files = RolloutFiles(paths.rollouts, service)
    status = files.load()
    if status is None or status.phase.done:
        raise SandboxError(f"{service} has no rollout in progress")
    if paused:
        files.pause.touch()
    else:
        files.pause.unlink(missing_ok=True)
    return status


def running_driver(paths: Paths, service: str) -> int | None:
    """The PID of the service's running rollout driver, if one runs."""
    return RolloutFiles(paths.rollouts, service).driver_pid()

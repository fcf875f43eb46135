"""What a service's canary policy does, written once for every engine.

`gantry/service.py`'s `Canary` says what the policy is (interval, threshold, stepWeight,
maxWeight, metric checks); this module says what it does:

- `METRIC_CHECKS`: each metric check as a query, keyed by (metric, engine). The cluster's Flagger
  MetricTemplates (infra/serving/manifests.py) and the sandbox's PromQL (sandbox/analysis.py) are
  generated from it; "cluster" None means Flagger's built-in check.
- `advance()`: the rollout as a pure state machine, like Flagger's scheduler. Given the policy,
  the current `CanaryStatus`, this tick's check results and the time, it returns the next status
  and the one `Action` the engine must perform. The sandbox's driver (sandbox/rollout.py) is a
  ticker around it; on a cluster Flagger itself runs the policy (rendered into a Canary).

The phases are Flagger's (`CanaryPhase`, pkg/apis/flagger/v1beta1/status.go), so a cluster's
Canary status and the sandbox's read alike. A rollout goes

    Initializing --INITIALIZE--> Initialized --SET_WEIGHT(stepWeight)--> Progressing
    Progressing: every `interval` RUN_CHECKS; all pass -> SET_WEIGHT(+stepWeight), or after the
                 pass at maxWeight PROMOTE (100 % to the canary) -> Promoting
                 a failure (no data fails) -> failed_checks + 1; the threshold-th -> ROLL_BACK
    Promoting --FINALISE (the canary becomes the stable version)--> Succeeded
    any phase before Promoting with a rollback asked for (`request_rollback`) --ROLL_BACK--> Failed
    Initialized/Progressing with `paused` -> Waiting (nothing steps, no failure counts)
    Waiting without `paused` -> where it was; the next check one interval after the resume

Unlike Flagger, which rolls back on the tick after the threshold-th failed check, the rollback
action comes with that failure (one interval sooner), and a failed pre-rollout hook rolls back at
once (Flagger counts it as a failed check and retries). Flagger's WaitingPromotion, Finalising,
Terminating and Terminated are named for reading a cluster's status; the sandbox never enters
them (its FINALISE is one step).

Resuming: the engine performs the action, then persists the returned status. Every action is
idempotent and `advance` is deterministic, so an engine killed between the two reloads the
previous status and gets the same action again (with fresh check results).

Imports neither pulumi nor ray.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from gantry.sandbox_state import app_name
from gantry.service import Canary, MetricName

# ---------------------------------------------------------------- metric checks


Engine = Literal["cluster", "sandbox"]


@dataclass(frozen=True)
class Scope:
    """Where one engine finds a canary's series, and how it spells a check's window."""

    serve: str  # label matchers of the canary's Ray Serve series (ray_serve_*)
    app: str  # label matchers of the canary's Gantry request series (ray_gantry_*)
    window: str  # the range of every rate(), e.g. `30s`


# Flagger fills in `{{ namespace }}`, `{{ target }}` and `{{ interval }}` (the check's interval).
# `{{ target }}-<hash>-<id>` matches the canary pods only (primary pods are
# `{{ target }}-primary-...`).
_CANARY_PODS = 'namespace="{{ namespace }}", pod=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"'
CLUSTER_SCOPE = Scope(serve=_CANARY_PODS, app=_CANARY_PODS, window="{{ interval }}")


def sandbox_scope(service: str, version: str, window_s: int) -> Scope:
    """In the sandbox a version is the Serve application `<service>-<version>`, and Gantry's own
    request metrics carry the `service` and `version` labels."""
    return Scope(
        serve=f'application="{app_name(service, version)}"',
        app=f'service="{service}", version="{version}"',
        window=f"{window_s}s",
    )


def _rate(metric: str, matchers: str, s: Scope) -> str:
    return f"rate({metric}{{{matchers}}}[{s.window}])"


def _absent_is_zero(expr: str) -> str:
    """A counter with no series yet counts as 0, not as no data: Serve's error counter has no
    series until the first error, and else every healthy canary would fail for lack of data."""
    return f"({expr} or vector(0))"


def _success_rate(s: Scope) -> str:
    ok = _rate("ray_gantry_requests_total", f'{s.app}, outcome!="server_error"', s)
    return f"100 * sum({ok}) / sum({_rate('ray_gantry_requests_total', s.app, s)})"


def _request_p99_ms(s: Scope) -> str:
    buckets = _rate("ray_gantry_request_latency_seconds_bucket", s.app, s)
    return f"1000 * histogram_quantile(0.99, sum by (le) ({buckets}))"


def _serve_error_rate(s: Scope) -> str:
    errors = _rate("ray_serve_deployment_error_counter_total", s.serve, s)
    requests = _rate("ray_serve_deployment_request_counter_total", s.serve, s)
    return f"100 * {_absent_is_zero(f'sum({errors})')} / sum({requests})"


def _serve_latency_p99_ms(s: Scope) -> str:
    buckets = _rate("ray_serve_deployment_processing_latency_ms_bucket", s.serve, s)
    return f"histogram_quantile(0.99, sum by (le) ({buckets}))"


Query = Callable[[Scope], str]

# Every metric check (MetricName) per engine. "cluster" None: Flagger's built-in check over
# Istio's telemetry (no MetricTemplate); the sandbox computes those from Gantry's own metrics.
METRIC_CHECKS: dict[tuple[MetricName, Engine], Query | None] = {
    # % of requests answered without a 5xx; threshold `min`
    ("request-success-rate", "cluster"): None,
    ("request-success-rate", "sandbox"): _success_rate,
    # p99 of the request time in the replica, ms; threshold `max`
    ("request-duration", "cluster"): None,
    ("request-duration", "sandbox"): _request_p99_ms,
    # % of requests the Serve replicas failed with an exception; threshold `max`
    ("serve-error-rate", "cluster"): _serve_error_rate,
    ("serve-error-rate", "sandbox"): _serve_error_rate,
    # p99 of Serve's processing latency, ms; threshold `max`
    ("serve-latency-p99", "cluster"): _serve_latency_p99_ms,
    ("serve-latency-p99", "sandbox"): _serve_latency_p99_ms,
}

METRIC_NAMES: tuple[MetricName, ...] = get_args(MetricName)


def cluster_query(metric: MetricName) -> str | None:
    """A check's Flagger MetricTemplate query; None when Flagger has it built in."""
    query = METRIC_CHECKS[(metric, "cluster")]
    return None if query is None else query(CLUSTER_SCOPE)


def sandbox_query(metric: MetricName, service: str, version: str, window_s: int) -> str:
    """A check's PromQL for one version of a service in the sandbox, over `window_s` seconds."""
    query = METRIC_CHECKS[(metric, "sandbox")]
    assert query is not None, f"{metric}: the sandbox has no built-in checks"
    return query(sandbox_scope(service, version, window_s))


@dataclass(frozen=True)
class CheckResult:
    """One metric check's value against its threshold range; no data fails (as in Flagger)."""

    name: str
    value: float | None  # None: no data
    min: float | None
    max: float | None
    detail: str | None = None  # why there is no value, when the query itself failed

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        if self.min is not None and self.value < self.min:
            return False
        return not (self.max is not None and self.value > self.max)

    def describe(self) -> str:
        bound = " and ".join(
            s for s in (f">= {self.min:g}" if self.min is not None else "",
                        f"<= {self.max:g}" if self.max is not None else "") if s
        )  # fmt: skip
        shown = "no data" if self.value is None else f"{self.value:.4g}"
        if self.detail:
            shown += f" ({self.detail})"
        return f"{self.name} = {shown} (want {bound})"


def all_passed(policy: Canary, checks: Sequence[CheckResult]) -> bool:
    """Whether every check of the policy has a result and it passed (a missing one fails)."""
    by_name = {c.name: c for c in checks}
    return all((r := by_name.get(m.name)) is not None and r.passed for m in policy.metrics)


# ---------------------------------------------------------------- the state machine


class Phase(enum.StrEnum):
    """A rollout's phase: Flagger's CanaryPhase values."""

    INITIALIZING = "Initializing"  # the canary is being deployed at 0 % (pre-rollout hooks run)
    INITIALIZED = "Initialized"  # the canary serves at 0 %, its pre-rollout hooks passed
    WAITING = "Waiting"  # paused: nothing steps, no failure counts
    PROGRESSING = "Progressing"  # analysis: checks every interval, a weight step per pass
    WAITING_PROMOTION = "WaitingPromotion"  # Flagger only: a promotion gate
    PROMOTING = "Promoting"  # the canary takes all traffic
    FINALISING = "Finalising"  # Flagger only: traffic back on the (promoted) primary
    SUCCEEDED = "Succeeded"  # promoted: the canary's version is the stable one
    FAILED = "Failed"  # rolled back: the stable version serves everything
    TERMINATING = "Terminating"  # Flagger only: the Canary object is being deleted
    TERMINATED = "Terminated"  # Flagger only

    @property
    def done(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class Outcome(enum.StrEnum):
    """How a rollout ended, as the sandbox's driver reports it (its event names)."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"  # rolled back because the user interrupted the driver

    @property
    def exit_code(self) -> int:
        """`gantry rollout`'s exit code: 0 promoted, 1 rolled back, 130 (128 + SIGINT) aborted."""
        return {Outcome.PROMOTED: 0, Outcome.ROLLED_BACK: 1, Outcome.ABORTED: 130}[self]


# The outcome a final phase means.
OUTCOMES = {Phase.SUCCEEDED: Outcome.PROMOTED, Phase.FAILED: Outcome.ROLLED_BACK}


class CanaryStatus(BaseModel):
    """A rollout's state between ticks, as Flagger's Canary `status`. JSON-serialisable: an
    engine persists it after each action and resumes from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phase: Phase
    stable: str  # the version serving (100 - canary_weight) %
    canary: str  # the version under analysis
    canary_weight: int = Field(0, ge=0, le=100)  # % of traffic to the canary
    failed_checks: int = 0  # analyses that failed so far
    iterations: int = 0  # analyses run so far
    # Epoch s of the last weight step, analysis or resume: the next analysis is one interval on.
    last_step_time: float
    paused: bool = False  # set by the user (`set_paused`): Waiting while set
    # Why the rollout is being (or was) rolled back; set: the next action is ROLL_BACK.
    reason: str | None = None
    # The engine's settings of the canary version (the sandbox: its user_config); opaque here.
    canary_config: dict[str, Any] = {}

    @property
    def outcome(self) -> Outcome | None:
        return OUTCOMES.get(self.phase)

    def _with(self, **changes: Any) -> CanaryStatus:
        return self.model_copy(update=changes)


class Do(enum.StrEnum):
    """What the engine must do on this tick."""

    INITIALIZE = "initialize"  # deploy the canary at 0 %, wait until it serves, pre-rollout hooks
    SET_WEIGHT = "set_weight"  # route `weight` % of traffic to the canary
    RUN_CHECKS = "run_checks"  # run the metric checks; advance again with their results
    PROMOTE = "promote"  # route 100 % to the canary
    FINALISE = "finalise"  # the canary becomes the stable version; remove the old one
    ROLL_BACK = "roll_back"  # 0 % to the canary, remove it (`reason` says why)
    WAIT = "wait"  # nothing until `until` (None: until the status changes, e.g. a resume)
    NOTHING = "nothing"  # the rollout is over


@dataclass(frozen=True)
class Action:
    do: Do
    weight: int | None = None  # SET_WEIGHT, PROMOTE, ROLL_BACK: the canary's weight after it
    until: float | None = None  # WAIT: epoch s
    reason: str | None = None  # ROLL_BACK


def start(
    stable: str, canary: str, now: float, canary_config: dict[str, Any] | None = None
) -> CanaryStatus:
    """The status of a new rollout from `stable` to `canary`."""
    return CanaryStatus(
        phase=Phase.INITIALIZING,
        stable=stable,
        canary=canary,
        last_step_time=now,
        canary_config=canary_config or {},
    )


def request_rollback(status: CanaryStatus, reason: str) -> CanaryStatus:
    """Ask for a rollback (a failed pre-rollout hook, an error, the user): the next `advance`
    rolls back. The first reason asked for is kept. A finished rollout is left as it is, and so
    is a promotion (Promoting): the canary passed every check and already takes all traffic, and
    the old version may already be gone, so the promotion finishes (as in Flagger)."""
    if status.phase.done or status.phase is Phase.PROMOTING or status.reason is not None:
        return status
    return status._with(reason=reason)


def set_paused(status: CanaryStatus, paused: bool) -> CanaryStatus:
    """The user's pause flag; `advance` moves to Waiting (and back) on its next tick."""
    return status if status.phase.done else status._with(paused=paused)


def advance(
    policy: Canary, status: CanaryStatus, checks: Sequence[CheckResult] | None, now: float
) -> tuple[CanaryStatus, Action]:
    """One tick: the next status and the action that gets the world there.

    `checks`: this tick's metric check results, None when none were run. When an analysis is due
    and `checks` is None, the action is RUN_CHECKS (status unchanged): run them and call again.
    The engine persists the returned status only once the action is done.
    """
    if status.phase.done:
        return status, Action(Do.NOTHING)
    if status.reason is not None:
        rolled_back = status._with(phase=Phase.FAILED, canary_weight=0)
        return rolled_back, Action(Do.ROLL_BACK, weight=0, reason=status.reason)
    if status.phase is Phase.INITIALIZING:
        return status._with(phase=Phase.INITIALIZED, last_step_time=now), Action(Do.INITIALIZE)
    if status.phase is Phase.PROMOTING:
        return status._with(phase=Phase.SUCCEEDED), Action(Do.FINALISE)
    if status.paused:
        return status._with(phase=Phase.WAITING), Action(Do.WAIT)
    if status.phase is Phase.WAITING:  # resumed: where it was, a full interval before a check
        where = Phase.PROGRESSING if status.canary_weight else Phase.INITIALIZED
        status = status._with(phase=where, last_step_time=now)
    if status.phase is Phase.INITIALIZED:
        first = policy.step_weight
        progressing = status._with(phase=Phase.PROGRESSING, canary_weight=first, last_step_time=now)
        return progressing, Action(Do.SET_WEIGHT, weight=first)

    # Progressing
    due = status.last_step_time + policy.interval_s
    if now < due:
        return status, Action(Do.WAIT, until=due)
    if checks is None:
        return status, Action(Do.RUN_CHECKS)
    status = status._with(iterations=status.iterations + 1, last_step_time=now)
    if not all_passed(policy, checks):
        failed = status.failed_checks + 1
        status = status._with(failed_checks=failed)
        if failed >= policy.threshold:
            reason = f"{failed} failed checks (threshold {policy.threshold})"
            return advance(policy, status._with(reason=reason), None, now)
        return status, Action(Do.WAIT, until=now + policy.interval_s)
    if status.canary_weight < policy.max_weight:
        weight = min(status.canary_weight + policy.step_weight, policy.max_weight)
        return status._with(canary_weight=weight), Action(Do.SET_WEIGHT, weight=weight)
    return status._with(phase=Phase.PROMOTING, canary_weight=100), Action(Do.PROMOTE, weight=100)

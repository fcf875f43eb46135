"""One wait/retry policy for the sandbox's control plane: Ray's dashboard (and Serve's REST API on
it), Prometheus, and every wait for something to come up.

Each caller used to have its own loop, and each treated a failure its own way: one retried a 500,
the next raised at the first connection reset. Here, once (on tenacity):

- transient: the connection failed or broke, the request timed out, or the server answered 5xx
  (Ray's dashboard answers 500 while its Serve module restarts, Prometheus 503 while it starts).
  `call` retries it with growing waits for its policy's budget, then raises `Unavailable`;
  `until` counts it as "not yet".
- anything else (a 4xx, a malformed answer) means the request is wrong: raised at once.

Both take the injected `Clock`, so a test with a fake one never sleeps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
import tenacity

from sandbox.errors import SandboxError, Unavailable

T = TypeVar("T")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """How long `call` keeps retrying a transient failure."""

    budget_s: float  # s after the first attempt: no attempt starts later
    first_wait_s: float  # s before the first retry; each later wait doubles...
    max_wait_s: float  # s: ...up to this


# One idempotent request to a local control-plane API. Ray's dashboard answers 500 for tens of
# seconds while its Serve module (re)starts on a busy machine; longer is an outage, not a blip.
# Waits 0.5, 1, 2, 4, 5, 5... s: a recovered API is seen within 5 s.
CALL = Policy(budget_s=30, first_wait_s=0.5, max_wait_s=5)
# One canary check's PromQL query. Short: a query that still fails only fails its check (as no
# data would), and the canary's threshold of failed checks, an interval apart, is the long retry;
# a tick queries every check, so against a dead Prometheus it must end well within an interval.
CHECK = Policy(budget_s=5, first_wait_s=0.5, max_wait_s=2)


@dataclass(frozen=True)
class Clock:
    """Time for the rollout driver and everything it waits on: injected once (tests pass a
    fake)."""

    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


# Deadlines when no clock is injected: a monotonic clock, as the wall clock may step.
MONOTONIC = Clock(now=time.monotonic)

_TRANSIENT = (
    requests.ConnectionError,  # refused, reset (also a connect timeout)
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,  # the connection broke mid-answer
    Unavailable,  # an inner `call` gave up: an outer, longer wait may still see it back
)


def is_transient(err: BaseException) -> bool:
    """A failure that may pass by itself, so worth another attempt."""
    if isinstance(err, requests.HTTPError):
        return err.response is not None and err.response.status_code >= 500
    return isinstance(err, _TRANSIENT)


def describe(err: BaseException) -> str:
    """A failure in one line: an HTTP error's status and body (the server's reason), a
    SandboxError's message, else the exception."""
    if isinstance(err, requests.HTTPError) and err.response is not None:
        text = f"HTTP {err.response.status_code}: {err.response.text}"
    elif isinstance(err, SandboxError):
        text = str(err)
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())[:300]


def call(fn: Callable[[], T], what: str, policy: Policy = CALL, clock: Clock | None = None) -> T:
    """`fn()`, one idempotent request, retried while it fails transiently; after `policy`'s
    budget `Unavailable` names `what` and the last error. Any other failure raises at once."""
    clock = clock or MONOTONIC
    started = clock.now()
    try:
        return tenacity.Retrying(
            stop=_out_of(policy.budget_s, clock, started),
            wait=tenacity.wait_exponential(multiplier=policy.first_wait_s, max=policy.max_wait_s),
            retry=tenacity.retry_if_exception(is_transient),
            sleep=clock.sleep,
            before_sleep=lambda rs: _log.info(
                "%s: %s; retrying in %.1f s", what, _last_error(rs), rs.upcoming_sleep
            ),
        )(fn)
    except tenacity.RetryError as gave_up:
        last = gave_up.last_attempt
        err = last.exception()
        assert err is not None  # only failures are retried
        raise Unavailable(
            f"{what}: still failing after {last.attempt_number} attempts in "
            f"{clock.now() - started:.0f}s: {describe(err)}"
        ) from err


def until(
    probe: Callable[[], T],
    timeout_s: float,
    what: str,
    interval_s: float,
    *,
    detail: str | Callable[[], str] = "",
    clock: Clock | None = None,
) -> T:
    """Call `probe` every `interval_s` until it returns something truthy, and return that. A
    transient error counts as "not yet", any other raises at once. After `timeout_s`:
    SandboxError "<what> within <timeout_s>s[; <detail>][; last error: ...]"."""
    clock = clock or MONOTONIC
    try:
        return tenacity.Retrying(
            stop=_out_of(timeout_s, clock, clock.now()),
            wait=tenacity.wait_fixed(interval_s),
            retry=tenacity.retry_if_exception(is_transient) | tenacity.retry_if_not_result(bool),
            sleep=clock.sleep,
        )(probe)
    except tenacity.RetryError as timed_out:
        parts = [f"{what} within {timeout_s:g}s", detail() if callable(detail) else detail]
        err = timed_out.last_attempt.exception()
        if err is not None:
            parts.append(f"last error: {describe(err)}")
        raise SandboxError("; ".join(p for p in parts if p)) from err


def _out_of(
    budget_s: float, clock: Clock, started: float
) -> Callable[[tenacity.RetryCallState], bool]:
    """Stop when the next attempt would start more than `budget_s` after the first (on `clock`:
    tenacity's own stops read the real time)."""
    return lambda rs: clock.now() - started + rs.upcoming_sleep > budget_s


def _last_error(rs: tenacity.RetryCallState) -> str:
    err = rs.outcome.exception() if rs.outcome else None
    return describe(err) if err else "?"

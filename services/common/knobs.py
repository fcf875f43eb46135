"""Runtime knobs of a service, delivered in Serve's `user_config` and applied in `reconfigure()`.

Every field has a unit and a safe default, so an empty `user_config` is valid. Unknown keys are
rejected, so a typo in serve.yaml fails the deployment with a message naming the key instead of
being silently ignored.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MIB = 1024 * 1024


class _Knobs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Batching(_Knobs):
    # Most requests merged into one model call (services/common/batching.py). Only reached if the
    # deployment's `max_ongoing_requests` is at least this large (Serve's default of 5 caps every
    # batch at 5).
    max_batch_size: int = Field(default=32, ge=1, le=1024)
    # Longest a request that finds the model idle waits for others to join it, seconds: for as
    # many as the last model call carried, so never when that was one request alone (requests
    # that arrive while the model computes go in the next call without waiting).
    batch_wait_timeout_s: float = Field(default=0.005, ge=0.0, le=10.0)


class Limits(_Knobs):
    # Items per request (strings for the embedder, rows for the classifier).
    max_items: int = Field(default=64, ge=1)
    # Characters per input string (embedder only).
    max_chars: int = Field(default=2000, ge=1)
    # Request body, bytes. Larger bodies get 413 before any parsing.
    max_body_bytes: int = Field(default=MIB, ge=1)


class Faults(_Knobs):
    """TEST-ONLY fault injection for rehearsing canary rollbacks. Off by default; never set in
    production config."""

    # Fraction of inference requests answered with HTTP 500 (0..1).
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # Extra latency added to every inference request, milliseconds.
    added_latency_ms: int = Field(default=0, ge=0, le=60_000)


class Knobs(_Knobs):
    batching: Batching = Field(default_factory=Batching)
    limits: Limits = Field(default_factory=Limits)
    faults: Faults = Field(default_factory=Faults)


class KnobsError(ValueError):
    """A user_config that does not validate; the message names the key."""


K = TypeVar("K", bound=Knobs)


def parse_knobs(model: type[K], raw: dict[str, Any] | None) -> K:
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "user_config"
        raise KnobsError(f"user_config.{where}: {err['msg']}") from None

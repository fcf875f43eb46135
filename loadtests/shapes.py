"""Load shapes as data: how many users run at each second of a test.

Pure functions of time with no Locust import, so they are unit-tested (and planned, and drawn)
without gevent. `loadtests/locustfile.py` wraps the chosen shape in a `LoadTestShape` whose
`tick()` is one line. Units: times in seconds since the load started, users are concurrent
Locust users, spawn_rate in users started (or stopped) per second.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Hard bounds: a scenario file cannot ask for an unbounded run.
MAX_USERS = 256
MAX_DURATION_S = 3600

Users = Annotated[int, Field(ge=0, le=MAX_USERS)]
Seconds = Annotated[float, Field(gt=0, le=MAX_DURATION_S)]
Offset = Annotated[float, Field(ge=0, le=MAX_DURATION_S)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_s: Seconds
    """Total load time in s; `users_at` is None from then on (the test stops)."""
    spawn_rate: Annotated[float, Field(gt=0, le=MAX_USERS)] = 8.0
    """Users started or stopped per second when the user count changes."""

    def users_at(self, t: float) -> int | None:
        """Users wanted at `t` s after the start, None once the shape is over."""
        if t >= self.duration_s:
            return None
        return self._users(t)

    def _users(self, t: float) -> int:
        raise NotImplementedError

    @property
    def max_users(self) -> int:
        return max(self._users(float(t)) for t in range(int(self.duration_s) + 1))

    def tick(self, t: float) -> tuple[int, float] | None:
        """What Locust's `LoadTestShape.tick()` returns at run time `t` s."""
        users = self.users_at(t)
        return None if users is None else (users, self.spawn_rate)


class Step(_Shape):
    """`start_users` until `step_at_s`, then `step_users` until `duration_s`."""

    type: Literal["step"]
    start_users: Users = 1
    step_users: Annotated[int, Field(ge=1, le=MAX_USERS)]
    step_at_s: Offset = 10.0

    def _users(self, t: float) -> int:
        return self.start_users if t < self.step_at_s else self.step_users

    @model_validator(mode="after")
    def _inside(self) -> Step:
        if self.step_at_s >= self.duration_s:
            raise ValueError(f"step_at_s {self.step_at_s} must be before duration_s")
        return self


class Spike(_Shape):
    """`base_users`, then `spike_users` for `spike_s` seconds from `spike_at_s`, then base again."""

    type: Literal["spike"]
    base_users: Users = 1
    spike_users: Annotated[int, Field(ge=1, le=MAX_USERS)]
    spike_at_s: Offset = 10.0
    spike_s: Seconds = 10.0

    def _users(self, t: float) -> int:
        in_spike = self.spike_at_s <= t < self.spike_at_s + self.spike_s
        return self.spike_users if in_spike else self.base_users

    @model_validator(mode="after")
    def _inside(self) -> Spike:
        if self.spike_at_s + self.spike_s > self.duration_s:
            raise ValueError("spike_at_s + spike_s must not exceed duration_s")
        return self


class Ramp(_Shape):
    """Linear from `from_users` to `to_users` over `ramp_s` seconds, then hold until the end."""

    type: Literal["ramp"]
    from_users: Users = 1
    to_users: Users
    ramp_s: Seconds

    def _users(self, t: float) -> int:
        if t >= self.ramp_s:
            return self.to_users
        return round(self.from_users + (self.to_users - self.from_users) * t / self.ramp_s)

    @model_validator(mode="after")
    def _inside(self) -> Ramp:
        if self.ramp_s > self.duration_s:
            raise ValueError(f"ramp_s {self.ramp_s} must not exceed duration_s")
        return self


class Soak(_Shape):
    """A constant `users` for the whole `duration_s`."""

    type: Literal["soak"]
    users: Annotated[int, Field(ge=1, le=MAX_USERS)]

    def _users(self, t: float) -> int:
        return self.users


Shape = Annotated[Step | Spike | Ramp | Soak, Field(discriminator="type")]

"""Shapes: users over time, the end of the run, and what Locust's tick() gets."""

import pytest
from pydantic import TypeAdapter, ValidationError

from loadtests.shapes import MAX_USERS, Ramp, Shape, Soak, Spike, Step


def test_step_holds_start_users_until_the_step_then_step_users_until_the_end() -> None:
    s = Step(type="step", start_users=2, step_users=10, step_at_s=5, duration_s=20, spawn_rate=4)
    assert [s.users_at(t) for t in (0, 4.9, 5, 19.9)] == [2, 2, 10, 10]
    assert s.users_at(20) is None
    assert s.tick(6) == (10, 4)
    assert s.tick(25) is None
    assert s.max_users == 10


def test_spike_returns_to_base_after_the_spike() -> None:
    s = Spike(type="spike", base_users=1, spike_users=9, spike_at_s=10, spike_s=5, duration_s=30)
    assert [s.users_at(t) for t in (9, 10, 14.9, 15, 29)] == [1, 9, 9, 1, 1]


def test_ramp_is_linear_then_holds() -> None:
    s = Ramp(type="ramp", from_users=0, to_users=20, ramp_s=10, duration_s=15)
    assert [s.users_at(t) for t in (0, 5, 10, 14)] == [0, 10, 20, 20]


def test_soak_is_constant() -> None:
    s = Soak(type="soak", users=3, duration_s=60)
    assert {s.users_at(t) for t in range(60)} == {3}
    assert s.users_at(60) is None


def test_shape_is_chosen_by_type() -> None:
    shape = TypeAdapter(Shape).validate_python({"type": "soak", "users": 1, "duration_s": 5})
    assert isinstance(shape, Soak)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "soak", "users": MAX_USERS + 1, "duration_s": 5},  # unbounded users
        {"type": "soak", "users": 1, "duration_s": 99999},  # unbounded time
        {"type": "step", "step_users": 2, "step_at_s": 30, "duration_s": 20},  # step after end
        {"type": "ramp", "to_users": 2, "ramp_s": 30, "duration_s": 20},
        {"type": "spike", "spike_users": 2, "spike_at_s": 15, "spike_s": 10, "duration_s": 20},
        {"type": "soak", "users": 1, "duration_s": 5, "spawn": 2},  # typo
    ],
)
def test_impossible_or_unbounded_shapes_are_rejected(raw: dict) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Shape).validate_python(raw)

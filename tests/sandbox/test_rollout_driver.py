"""The sandbox's rollout driver (the ticker around gantry.canary.advance) with a fake engine and
a fake clock: no Ray, no Prometheus. A killed driver is resumed by the next one from the saved
status; Ctrl-C, `--abort`, a pause, a failed smoke test, a dead Prometheus and an engine error
each end where they must."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import dead_url

from gantry.canary import CanaryStatus, CheckResult, Outcome, Phase
from gantry.sandbox_state import ServiceRouting
from gantry.service import Canary
from gantry.stack import load_stack_file
from sandbox import retry
from sandbox.analysis import run_check
from sandbox.canary_engine import Clock
from sandbox.errors import SandboxError
from sandbox.lifecycle import Plan
from sandbox.prometheus import PromQL
from sandbox.rollout import Driver
from sandbox.rollout_files import EventLog, RolloutFiles

POLICY = Canary.model_validate(
    {
        "interval": "10s",
        "threshold": 2,
        "stepWeight": 25,
        "maxWeight": 50,
        "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}],
    }
)


class Killed(BaseException):
    """The driver's process dies (SIGKILL): nothing of the driver runs after it."""


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.on_sleep: list[Any] = []

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s
        for hook in self.on_sleep:
            hook(self.t)


@dataclass
class World:
    """What the sandbox runs: routing.json's entry for the service."""

    routing: ServiceRouting = field(default_factory=lambda: ServiceRouting(stable="v1"))


class FakeEngine:
    """Does what SandboxEngine does to routing.json; records every call."""

    def __init__(self, world: World, clock: FakeClock, passing: bool = True) -> None:
        self.world, self.clock, self.passing = world, clock, passing
        self.calls: list[tuple[Any, ...]] = []
        self.die_on: tuple[Any, ...] | None = None  # a call that kills the driver once done
        self.raise_on: dict[tuple[Any, ...], BaseException] = {}  # a call that raises instead
        self.smoke_ok = True
        self.loaded = False

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if call in self.raise_on:
            raise self.raise_on.pop(call)

    def _done(self, *call: Any) -> None:
        if call == self.die_on:
            raise Killed()

    def current(self) -> ServiceRouting:
        return self.world.routing.model_copy()

    def matches(self, status: CanaryStatus) -> bool:
        r = self.world.routing
        return r.stable == status.stable and r.canary in (None, status.canary)

    def restore(self, status: CanaryStatus) -> None:
        if status.phase is Phase.PROGRESSING and self.world.routing.canary_weight != (
            status.canary_weight
        ):
            self.set_weight(status.canary_weight)

    def initialize(self, status: CanaryStatus) -> str | None:
        self._call("initialize")
        r = self.world.routing
        r.canary, r.canary_user_config = status.canary, status.canary_config
        self._done("initialize")
        return None if self.smoke_ok else "smoke webhook failed"

    def set_weight(self, weight: int) -> None:
        self._call("set_weight", weight)
        self.world.routing.canary_weight = weight
        self._done("set_weight", weight)

    def run_checks(self, status: CanaryStatus) -> list[CheckResult]:
        self._call("run_checks", status.canary_weight, self.clock.t)
        value = 100.0 if self.passing else 50.0
        return [CheckResult("request-success-rate", value, 99, None)]

    def promote(self, status: CanaryStatus) -> None:
        self.set_weight(100)

    def finalise(self, status: CanaryStatus) -> None:
        self._call("finalise")
        r = self.world.routing
        if r.canary == status.canary:
            r.stable, r.canary, r.canary_weight = status.canary, None, 0

    def roll_back(self, status: CanaryStatus, reason: str) -> None:
        self._call("roll_back", reason)
        r = self.world.routing
        r.canary, r.canary_weight, r.canary_user_config = None, 0, {}

    def load(self, on: bool, status: CanaryStatus) -> None:
        self.loaded = on


def driver(tmp_path: Path, engine: FakeEngine) -> Driver:
    files = RolloutFiles(tmp_path / "rollouts", "embedder")
    log = EventLog(files.events, lambda _: None)
    clock = Clock(now=engine.clock.now, sleep=engine.clock.sleep)
    return Driver("embedder", POLICY, engine, files, log, clock)


def events(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "rollouts" / "embedder.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def saved(tmp_path: Path) -> CanaryStatus:
    status = RolloutFiles(tmp_path / "rollouts", "embedder").load()
    assert status is not None
    return status


def steps(engine: FakeEngine) -> list[tuple[Any, ...]]:
    """The calls without the checks' times."""
    return [c[:2] if c[0] == "run_checks" else c for c in engine.calls]


# The calls of a clean rollout (without the checks' times).
WHOLE = [("initialize",), ("set_weight", 25), ("run_checks", 25), ("set_weight", 50),
         ("run_checks", 50), ("set_weight", 100), ("finalise",)]  # fmt: skip


def test_a_clean_rollout_steps_every_interval_and_promotes(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = FakeEngine(World(), clock)
    assert driver(tmp_path, engine).run("v2") is Outcome.PROMOTED
    assert steps(engine) == WHOLE
    checks_at = [c[2] for c in engine.calls if c[0] == "run_checks"]
    assert checks_at == [1010, 1020]  # one interval after each step
    assert engine.world.routing == ServiceRouting(stable="v2")
    assert saved(tmp_path).phase is Phase.SUCCEEDED and not engine.loaded
    kinds = [e["event"] for e in events(tmp_path)]
    assert kinds == ["start", "check", "check"]  # the fake engine logs no steps of its own
    assert events(tmp_path)[0]["steps"] == [25, 50]


@pytest.mark.parametrize(
    ("dies_after", "then"),
    [
        (("initialize",), WHOLE),
        (("set_weight", 25), WHOLE[1:]),
        # The weight goes back to the saved 25 %, then that tick runs again: checks, step.
        (("set_weight", 50), [("set_weight", 25), *WHOLE[2:]]),
        (("set_weight", 100), [("set_weight", 50), *WHOLE[4:]]),
    ],
)
def test_a_killed_driver_is_resumed_by_the_next_one(
    tmp_path: Path, dies_after: tuple[Any, ...], then: list[tuple[Any, ...]]
) -> None:
    world, clock = World(), FakeClock()
    first = FakeEngine(world, clock)
    first.die_on = dies_after
    with pytest.raises(Killed):
        driver(tmp_path, first).run("v2")
    status = saved(tmp_path)  # saved before the action the driver died in
    assert not status.phase.done

    second = FakeEngine(world, clock)
    with pytest.raises(SandboxError, match="unfinished rollout to v2"):
        driver(tmp_path, second).run("v3")
    assert driver(tmp_path, second).run(None) is Outcome.PROMOTED  # or run("v2"): the same
    assert steps(second) == then
    assert world.routing == ServiceRouting(stable="v2")
    takeover = next(e for e in events(tmp_path) if e["event"] == "takeover")
    assert takeover["phase"] == status.phase and takeover["canary_weight"] == status.canary_weight


def test_only_one_driver_per_service(tmp_path: Path) -> None:
    engine = FakeEngine(World(), FakeClock())
    d = driver(tmp_path, engine)
    with d.files.locked(), pytest.raises(SandboxError, match="already running"):
        driver(tmp_path, engine).run("v2")
    assert engine.calls == []


def test_failed_checks_roll_back_at_the_threshold(tmp_path: Path) -> None:
    engine = FakeEngine(World(), FakeClock(), passing=False)
    assert driver(tmp_path, engine).run("v2") is Outcome.ROLLED_BACK
    assert steps(engine) == [
        ("initialize",), ("set_weight", 25), ("run_checks", 25), ("run_checks", 25),
        ("roll_back", "2 failed checks (threshold 2)"),
    ]  # fmt: skip
    assert engine.world.routing == ServiceRouting(stable="v1")
    status = saved(tmp_path)
    assert (status.phase, status.failed_checks, status.reason) == (
        Phase.FAILED,
        2,
        "2 failed checks (threshold 2)",
    )


def test_a_failed_smoke_test_rolls_back_before_any_traffic(tmp_path: Path) -> None:
    engine = FakeEngine(World(), FakeClock())
    engine.smoke_ok = False
    assert driver(tmp_path, engine).run("v2") is Outcome.ROLLED_BACK
    assert steps(engine) == [("initialize",), ("roll_back", "smoke webhook failed")]


def test_ctrl_c_rolls_back_and_reports_aborted(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = FakeEngine(World(), clock)
    engine.raise_on[("run_checks", 25, 1010.0)] = KeyboardInterrupt()
    assert driver(tmp_path, engine).run("v2") is Outcome.ABORTED
    assert steps(engine)[-1] == ("roll_back", "aborted")
    assert engine.world.routing == ServiceRouting(stable="v1")
    assert saved(tmp_path).phase is Phase.FAILED
    assert [e["event"] for e in events(tmp_path)][-1] == "aborted"


def test_abort_rolls_back_what_a_killed_driver_left(tmp_path: Path) -> None:
    world, clock = World(), FakeClock()
    first = FakeEngine(world, clock)
    first.die_on = ("set_weight", 50)
    with pytest.raises(Killed):
        driver(tmp_path, first).run("v2")
    second = FakeEngine(world, clock)
    assert driver(tmp_path, second).abort() is Outcome.ROLLED_BACK
    assert steps(second) == [("roll_back", "--abort")]
    assert world.routing == ServiceRouting(stable="v1")
    assert driver(tmp_path, second).abort() is Outcome.ROLLED_BACK  # nothing left: a no-op
    assert len(second.calls) == 1


def test_a_pause_holds_the_rollout_until_resumed(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = FakeEngine(World(), clock)
    d = driver(tmp_path, engine)

    def user(t: float) -> None:  # `--pause` 5 s after the first step, `--resume` at 1300
        if 1005 <= t < 1300 and not d.files.pause.exists():
            d.files.pause.touch()
        elif t >= 1300:
            d.files.pause.unlink(missing_ok=True)

    clock.on_sleep.append(user)
    assert d.run("v2") is Outcome.PROMOTED
    assert steps(engine) == WHOLE  # no step lost, none repeated
    checks_at = [c[2] for c in engine.calls if c[0] == "run_checks"]
    assert checks_at[0] >= 1310  # nothing analysed while paused; a full interval after resuming
    kinds = [e["event"] for e in events(tmp_path)]
    assert kinds == ["start", "paused", "resumed", "check", "check"]
    assert not d.files.pause.exists()


def test_an_engine_error_rolls_back_then_says_so_in_one_line(tmp_path: Path) -> None:
    engine = FakeEngine(World(), FakeClock())
    engine.raise_on[("set_weight", 50)] = TimeoutError("Serve apps not RUNNING after 60s")
    with pytest.raises(SandboxError, match="the rollout failed: Serve apps not RUNNING") as err:
        driver(tmp_path, engine).run("v2")
    assert err.value.hint == "the rollout ended: rolled_back"
    assert steps(engine)[-1] == ("roll_back", "error: Serve apps not RUNNING after 60s")
    assert engine.world.routing == ServiceRouting(stable="v1")
    assert [e["event"] for e in events(tmp_path)][-2:] == ["check", "error"]


class PrometheusDown(FakeEngine):
    """Runs the real checks (sandbox/analysis.py) against a Prometheus that refuses every
    connection during the first `outage` analyses, then passes them."""

    def __init__(self, world: World, clock: FakeClock, outage: int) -> None:
        super().__init__(world, clock)
        self.outage = outage
        self.prom = PromQL(
            dead_url(), retry.Policy(budget_s=0.1, first_wait_s=0.01, max_wait_s=0.05)
        )
        repo = Path(__file__).resolve().parents[2]
        self.spec = Plan.from_config(load_stack_file(repo / "Pulumi.sandbox.yaml")).specs[
            "embedder"
        ]

    def run_checks(self, status: CanaryStatus) -> list[CheckResult]:
        if not self.outage:
            return super().run_checks(status)
        self.outage -= 1
        self._call("run_checks", status.canary_weight, self.clock.t)
        return [run_check(self.prom, self.spec, status.canary, m) for m in POLICY.metrics]


def test_a_dead_prometheus_fails_checks_and_the_threshold_rolls_back(tmp_path: Path) -> None:
    """Its queries' retries run out: each check fails (no exception ends the rollout), and the
    policy rolls back at its threshold, as for a bad canary."""
    engine = PrometheusDown(World(), FakeClock(), outage=10)
    assert driver(tmp_path, engine).run("v2") is Outcome.ROLLED_BACK
    assert steps(engine)[-1] == ("roll_back", "2 failed checks (threshold 2)")
    checks = [e for e in events(tmp_path) if e["event"] == "check"]
    assert len(checks) == 2 and not any(c["passed"] for c in checks)
    assert all("ConnectionError" in r["detail"] for c in checks for r in c["results"])


def test_a_prometheus_outage_shorter_than_the_threshold_only_holds_the_weight(
    tmp_path: Path,
) -> None:
    engine = PrometheusDown(World(), FakeClock(), outage=1)
    assert driver(tmp_path, engine).run("v2") is Outcome.PROMOTED
    assert steps(engine) == [*WHOLE[:3], ("run_checks", 25), *WHOLE[3:]]  # one more check at 25 %

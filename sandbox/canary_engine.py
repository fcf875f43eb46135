"""The canary policy's actions on a running sandbox (`SandboxEngine`): routing.json, the gateway's
weights and Serve's REST API for the applications, Prometheus for the checks, the smoke and load
webhooks. What each action means: sandbox/rollout.py."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import requests

from gantry.canary import CanaryStatus, CheckResult, Phase
from gantry.sandbox_state import Routing, SandboxState, ServiceRouting, app_name
from gantry.service import LoadHook as LoadHookSpec
from gantry.service import ServiceSpec, duration_s
from sandbox import retry
from sandbox.analysis import run_check
from sandbox.lifecycle import Plan, change_routing
from sandbox.prometheus import PromQL
from sandbox.retry import Clock
from sandbox.rollout_files import EventLog
from sandbox.serving import ServeApi, version_prefix
from sandbox.state import Paths

# Seconds for in-flight requests of a version to finish after the gateway stopped choosing it.
DRAIN_S = 2.0
# Seconds a removed application gets to go.
REMOVE_TIMEOUT_S = 120.0


class LoadHook:
    """The `load` webhook: steady traffic straight to the canary while it is analysed."""

    def __init__(self, url: str, hook: LoadHookSpec) -> None:
        self._url, self._req = url, hook.request
        self._timeout_s = duration_s(hook.timeout)
        self._period = hook.concurrency / hook.rps  # seconds between requests of one client
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, daemon=True) for _ in range(hook.concurrency)
        ]

    def _client(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.monotonic()
                # Failures show in the canary's metrics; the hook only supplies traffic.
                with contextlib.suppress(requests.RequestException):
                    session.request(
                        self._req.method, self._url, json=self._req.body, timeout=self._timeout_s
                    )
                self._stop.wait(max(0.0, self._period - (time.monotonic() - started)))

    def start(self) -> LoadHook:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self._timeout_s + 5)


class SandboxEngine:
    """The policy's actions on a running sandbox: routing.json, the gateway, Serve, Prometheus."""

    def __init__(
        self,
        plan: Plan,
        paths: Paths,
        state: SandboxState,
        spec: ServiceSpec,
        log: EventLog,
        clock: Clock,
    ) -> None:
        self.plan, self.paths, self.state, self.spec, self.log = plan, paths, state, spec, log
        self.clock = clock
        self.api = ServeApi(state.urls["dashboard"])
        self.prom = PromQL(state.urls["prometheus"], retry.CHECK)
        self._hook: LoadHook | None = None

    # ------------------------------------------------------------------ routing

    def _routing(self) -> Routing:
        return Routing.read(self.paths.routing)

    def _change(self, change: Callable[[ServiceRouting], None]) -> ServiceRouting:
        """This service's routing changed and applied, under routing.json's lock."""
        return change_routing(self.plan, self.paths, self.state, self.spec.name, change)

    def _url(self, version: str, path: str) -> str:
        return f"{self.state.urls['serve']}{version_prefix(self.spec.name, version)}{path}"

    # ------------------------------------------------------------------ Engine

    def current(self) -> ServiceRouting:
        return self._routing().services[self.spec.name]

    def matches(self, status: CanaryStatus) -> bool:
        if status.last_step_time < self.state.started_at:
            return False  # saved before this sandbox started: its routing began afresh
        r = self.current()
        if (r.stable, r.canary) == (status.canary, None):  # finalised, not yet saved
            return status.phase is Phase.PROMOTING
        if r.stable != status.stable:
            return False
        if r.canary is None:  # not deployed yet, or already removed
            return status.phase is Phase.INITIALIZING or status.reason is not None
        return r.canary == status.canary

    def restore(self, status: CanaryStatus) -> None:
        analysing = status.phase in {Phase.INITIALIZED, Phase.PROGRESSING, Phase.WAITING}
        if (
            analysing
            and status.reason is None
            and self.current().canary_weight != status.canary_weight
        ):
            self.set_weight(status.canary_weight)

    def initialize(self, status: CanaryStatus) -> str | None:
        def add_canary(r: ServiceRouting) -> None:
            if r.canary is None:
                r.canary, r.canary_weight = status.canary, 0
                r.canary_user_config = status.canary_config

        self._change(add_canary)
        app = app_name(self.spec.name, status.canary)
        self.api.wait_running([app], self.plan.settings.ready_timeout_s)
        self.log("canary_ready", app=app)
        if not self._smoke(status.canary):
            return "smoke webhook failed"
        self._wait_scraped(status.canary)
        return None

    def _smoke(self, version: str) -> bool:
        hook = self.spec.canary.webhooks.smoke
        if hook is None:
            return True
        r = hook.request
        try:
            resp = requests.request(
                r.method, self._url(version, r.path), json=r.body, timeout=duration_s(hook.timeout)
            )
            ok, detail = 200 <= resp.status_code < 300, f"HTTP {resp.status_code}"
        except requests.RequestException as err:
            ok, detail = False, repr(err)
        self.log("smoke", passed=ok, detail=detail)
        return ok

    def _wait_scraped(self, version: str) -> None:
        app = app_name(self.spec.name, version)
        query = f'count(ray_serve_replica_processing_queries{{application="{app}"}})'
        retry.until(
            lambda: self.prom.scalar(query),
            self.plan.settings.ready_timeout_s,
            f"Prometheus never saw {app}'s replicas",
            1,
            detail="checks would have no data",
            clock=self.clock,
        )
        self.log("metrics_visible", app=app)

    def set_weight(self, weight: int) -> None:
        def weigh(r: ServiceRouting) -> None:
            r.canary_weight = weight

        self._change(weigh)  # in place at the gateway: the next request sees it
        self.log("weight", canary_weight=weight)

    def run_checks(self, status: CanaryStatus) -> list[CheckResult]:
        return [run_check(self.prom, self.spec, status.canary, m) for m in self.spec.canary.metrics]

    def promote(self, status: CanaryStatus) -> None:
        self.set_weight(100)
        self.clock.sleep(DRAIN_S)

    def finalise(self, status: CanaryStatus) -> None:
        def make_stable(r: ServiceRouting) -> None:
            if r.canary == status.canary:
                # The canary's knobs become the stable version's (it keeps serving as configured).
                r.stable, r.canary, r.canary_weight = status.canary, None, 0
                r.stable_user_config, r.canary_user_config = r.canary_user_config, {}

        self._change(make_stable)
        old = app_name(self.spec.name, status.stable)
        self.api.wait_deleted([old], REMOVE_TIMEOUT_S)
        self.log("promoted", stable=status.canary, removed=old)

    def roll_back(self, status: CanaryStatus, reason: str) -> None:
        r = self.current()
        if r.canary is not None:
            if r.canary_weight:
                self.set_weight(0)
                self.clock.sleep(DRAIN_S)

            def remove_canary(r: ServiceRouting) -> None:
                r.canary, r.canary_weight, r.canary_user_config = None, 0, {}

            r = self._change(remove_canary)
        removed = app_name(self.spec.name, status.canary)
        self.api.wait_deleted([removed], REMOVE_TIMEOUT_S)
        self.log("rolled_back", stable=r.stable, removed=removed, reason=reason)

    def load(self, on: bool, status: CanaryStatus) -> None:
        hook = self.spec.canary.webhooks.load
        if hook is None or on == (self._hook is not None):
            return
        if self._hook is not None:
            self._hook.stop()
            self._hook = None
        else:
            self._hook = LoadHook(self._url(status.canary, hook.request.path), hook).start()

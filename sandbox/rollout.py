"""Gantry's rollout driver: the sandbox's Flagger.

`gantry rollout <service> --to <version>` follows the service's `canary` block
(services/<name>/service.yaml, the block the cluster's Flagger Canary is rendered from):

1. deploy the canary version as its own Serve application at weight 0 and wait for it;
2. pre-rollout smoke webhook: one real request straight to the canary must answer 2xx; then
   wait until Prometheus scrapes the canary's replicas (a new pool node's exporter is slow);
3. every `interval`: run each metric check with PromQL (no data fails), while the load webhook
   sends traffic straight to the canary; a pass moves the router's weight up by `stepWeight`
   (after `maxWeight` passes: promote), a failure counts, and `threshold` failures roll back;
4. promote: 100 % to the canary, then the old version's application is removed and the canary
   is the stable version; roll back: 0 % to the canary, then its application is removed.

Weights change in place (router `user_config`), and an application is only removed once the
router no longer sends it traffic, so no request is dropped. Every step goes to a JSONL event log
(`<state>/rollouts/<service>.jsonl`) and to the terminal.

Ctrl-C (or SIGTERM) aborts the rollout: traffic goes back to the stable version at 100 % and
the canary application is removed (the same end state as a rollback), then the command exits
130. If the driver is killed hard mid-way, `routing.json` still says which versions run and at
what weight; a later `gantry rollout` refuses to start until `gantry rollout <service> --abort`
restores that same consistent state.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gantry.sandbox_state import SandboxState, app_name
from gantry.service import Request, ServiceSpec, duration_s
from sandbox.analysis import CheckResult, run_check
from sandbox.lifecycle import Plan, SandboxError, deploy
from sandbox.prometheus import PromQL
from sandbox.serving import ROUTER_DEPLOYMENT, Routing, ServeApi, version_prefix
from sandbox.state import Paths

Emit = Callable[[dict[str, Any]], None]
# Seconds for in-flight requests of a version to finish after the router stopped choosing it.
DRAIN_S = 2.0


class Aborted(Exception):
    """Ctrl-C / SIGTERM during a rollout."""


@dataclass
class EventLog:
    """Appends every event as one JSON line and hands it to the terminal printer."""

    path: Path
    printer: Emit
    events: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: str, **data: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **data}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.events.append(record)
        self.printer(record)


class LoadHook:
    """The `load` webhook: steady traffic straight to the canary while it is analysed."""

    def __init__(self, url: str, request: Request, rps: float, concurrency: int) -> None:
        self._url, self._req = url, request
        self._period = concurrency / rps  # seconds between requests of one client
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, daemon=True) for _ in range(concurrency)
        ]

    def _client(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                # Failures show in the canary's metrics; the hook only supplies traffic.
                with contextlib.suppress(httpx.HTTPError):
                    client.request(self._req.method, self._url, json=self._req.body)
                self._stop.wait(max(0.0, self._period - (time.monotonic() - started)))

    def __enter__(self) -> LoadHook:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=35)


class Driver:
    def __init__(
        self,
        plan: Plan,
        paths: Paths,
        state: SandboxState,
        service: str,
        log: EventLog,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if service not in plan.specs:
            raise SandboxError(f"unknown service {service!r}; services: {sorted(plan.specs)}")
        self.plan, self.paths, self.state, self.log = plan, paths, state, log
        self.spec: ServiceSpec = plan.specs[service]
        self.api = ServeApi(state.urls["dashboard"])
        self.prom = PromQL(state.urls["prometheus"])
        self._sleep = sleep
        self._abort = threading.Event()

    # ------------------------------------------------------------------ routing changes

    def _routing(self) -> Routing:
        return Routing.read(self.paths.routing)

    def _apply(self, routing: Routing) -> None:
        routing.write(self.paths.routing)
        deploy(self.plan, self.paths, self.state, routing)

    def _wait_router(self) -> None:
        """Until the router replicas run the new `user_config` (an in-place reconfigure)."""
        name = self.spec.name
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            apps = self.api.status().get("applications") or {}
            dep = ((apps.get(name) or {}).get("deployments") or {}).get(ROUTER_DEPLOYMENT) or {}
            if apps.get(name, {}).get("status") == "RUNNING" and dep.get("status") == "HEALTHY":
                return
            time.sleep(0.3)
        raise SandboxError(f"the {name} router did not apply its new weights within 60 s")

    def _set_weight(self, weight: int) -> None:
        routing = self._routing()
        routing.services[self.spec.name].canary_weight = weight
        self._apply(routing)
        self._wait_router()

    # ------------------------------------------------------------------ the rollout

    def run(self, to: str, canary_user_config: dict[str, Any]) -> str:
        """Returns `promoted`, `rolled_back` or `aborted`."""
        name, canary = self.spec.name, self.spec.canary
        routing = self._routing()
        current = routing.services[name]
        if current.canary:
            raise SandboxError(
                f"{name} already has a canary ({current.canary} at {current.canary_weight} %)",
                "wait for that rollout, or restore the stable version: "
                f"gantry rollout {name} --abort",
            )
        if to == current.stable:
            raise SandboxError(f"{name} already serves {to}")
        self.log(
            "start",
            service=name,
            stable=current.stable,
            canary=to,
            interval_s=canary.interval_s,
            threshold=canary.threshold,
            steps=canary.steps,
            user_config=canary_user_config,
        )
        current.canary, current.canary_weight = to, 0
        current.canary_user_config = canary_user_config
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            self._apply(routing)
            self.api.wait_running([app_name(name, to)], self.plan.settings.ready_timeout_s)
            self.log("canary_ready", app=app_name(name, to))
            if not self._smoke(to):
                return self._rollback("smoke webhook failed")
            self._wait_scraped(to)
            return self._analyse(to)
        except (KeyboardInterrupt, Aborted):
            self.log("aborted", reason="interrupted (Ctrl-C/SIGTERM)")
            # Finish the restore even if Ctrl-C is pressed again.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                self._rollback("aborted")
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            return "aborted"
        except (SandboxError, RuntimeError, TimeoutError, httpx.HTTPError) as err:
            self.log("error", message=str(err))
            self._rollback(f"error: {err}")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, *_: object) -> None:
        raise Aborted()

    def _url(self, version: str, path: str) -> str:
        return f"{self.state.urls['serve']}{version_prefix(self.spec.name, version)}{path}"

    def _smoke(self, version: str) -> bool:
        hook = self.spec.canary.webhooks.smoke
        if hook is None:
            return True
        r = hook.request
        try:
            resp = httpx.request(
                r.method, self._url(version, r.path), json=r.body, timeout=duration_s(hook.timeout)
            )
            ok, detail = resp.is_success, f"HTTP {resp.status_code}"
        except httpx.HTTPError as err:
            ok, detail = False, repr(err)
        self.log("smoke", passed=ok, detail=detail)
        return ok

    def _wait_scraped(self, version: str) -> None:
        """Until Prometheus scrapes the canary's replicas: a new pool node's metrics exporter
        can take a while to appear, and checks before that would fail for no fault of the
        canary's."""
        app = app_name(self.spec.name, version)
        query = f'count(ray_serve_replica_processing_queries{{application="{app}"}})'
        deadline = time.monotonic() + self.plan.settings.ready_timeout_s
        while time.monotonic() < deadline:
            if self.prom.scalar(query):
                self.log("metrics_visible", app=app)
                return
            time.sleep(1)
        raise SandboxError(f"Prometheus never saw {app}'s replicas; checks would have no data")

    def _analyse(self, version: str) -> str:
        canary = self.spec.canary
        load = canary.webhooks.load
        hook = (
            LoadHook(
                self._url(version, load.request.path), load.request, load.rps, load.concurrency
            )
            if load
            else None
        )
        weight, failed = canary.step_weight, 0
        if hook:
            hook.__enter__()
        try:
            self._set_weight(weight)
            self.log("weight", canary_weight=weight)
            while True:
                self._sleep(canary.interval_s)
                results = [run_check(self.prom, self.spec, version, m) for m in canary.metrics]
                passed = all(r.passed for r in results)
                self.log(
                    "check",
                    canary_weight=weight,
                    passed=passed,
                    results=[_result(r) for r in results],
                )
                if not passed:
                    failed += 1
                    if failed >= canary.threshold:
                        return self._rollback(
                            f"{failed} failed checks (threshold {canary.threshold})"
                        )
                    continue
                if weight >= canary.max_weight:
                    return self._promote()
                weight = min(weight + canary.step_weight, canary.max_weight)
                self._set_weight(weight)
                self.log("weight", canary_weight=weight)
        finally:
            if hook:
                hook.__exit__()

    def _promote(self) -> str:
        name = self.spec.name
        routing = self._routing()
        r = routing.services[name]
        old, new = r.stable, r.canary
        assert new is not None
        self._set_weight(100)
        self.log("weight", canary_weight=100)
        self._sleep(DRAIN_S)
        routing = self._routing()
        r = routing.services[name]
        # The canary's knobs become the stable version's (it keeps serving as configured).
        r.stable, r.canary, r.canary_weight = new, None, 0
        r.stable_user_config, r.canary_user_config = r.canary_user_config, {}
        self._apply(routing)
        self.api.wait_deleted([app_name(name, old)], 120)
        self.log("promoted", stable=new, removed=app_name(name, old))
        return "promoted"

    def _rollback(self, reason: str) -> str:
        name = self.spec.name
        routing = self._routing()
        r = routing.services[name]
        if r.canary is None:
            return "rolled_back"
        canary = r.canary
        if r.canary_weight:
            self._set_weight(0)
            self.log("weight", canary_weight=0)
            self._sleep(DRAIN_S)
            routing = self._routing()
            r = routing.services[name]
        r.canary, r.canary_weight, r.canary_user_config = None, 0, {}
        self._apply(routing)
        self.api.wait_deleted([app_name(name, canary)], 120)
        self.log("rolled_back", stable=r.stable, removed=app_name(name, canary), reason=reason)
        return "rolled_back"

    def abort(self) -> str:
        """Restore the stable version at 100 % after a driver that was killed mid-way."""
        return self._rollback("--abort")


def _result(r: CheckResult) -> dict[str, Any]:
    return {"name": r.name, "value": r.value, "min": r.min, "max": r.max, "passed": r.passed}

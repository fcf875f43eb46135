"""Locust entry point. `gantry loadtest` runs it in its own process (`locust -f` this file) with
GANTRY_LOADTEST_RUN pointing at the run's spec; never import ray, requests or httpx here.

Besides Locust's own HTML/CSV it writes, once a second, one `LoadPoint` line to
`load.jsonl` (users, requests, failures, sliding-window p50/p95/p99), and it ends the run with a
reason in `abort.json` when the target stops answering or mostly fails.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path
from statistics import quantiles

import gevent
from locust import LoadTestShape, events
from locust.env import Environment

from loadtests import users
from loadtests.scenario import RunSpec
from loadtests.timeline import LoadPoint, append

SPEC = RunSpec.model_validate_json(Path(os.environ["GANTRY_LOADTEST_RUN"]).read_text())
OUT = Path(SPEC.out_dir)
SCENARIO = SPEC.scenario
# The parent creates this file to end the load early (e.g. once a rollout finished).
STOP = OUT / "stop"

# The one user class Locust finds in this module.
ServiceUser = users.USERS[SCENARIO.service]
users.ClassifierUser.n_features = SPEC.n_features
ServiceUser.mix = SCENARIO.payload
if SPEC.request_timeout_s is not None:
    ServiceUser.network_timeout = SPEC.request_timeout_s + users.TIMEOUT_MARGIN_S

if not SPEC.ui:

    class ScenarioShape(LoadTestShape):
        def tick(self) -> tuple[int, float] | None:
            return None if STOP.exists() else SCENARIO.shape.tick(self.get_run_time())


class Recorder:
    """Per-second load points and the abort watchdog."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.requests = self.failures = 0
        self.latencies: list[float] = []
        # (second, requests, failures, latencies) for the sliding windows.
        self.window: deque[tuple[int, int, int, list[float]]] = deque()
        self.last_ok = time.time()
        self.started = time.time()

    def on_request(self, response_time: float, exception: object, **_: object) -> None:
        self.requests += 1
        if exception is None:
            self.last_ok = time.time()
            self.latencies.append(response_time)
        else:
            self.failures += 1

    def flush(self) -> None:
        now = time.time()
        sec = int(now)
        self.window.append((sec, self.requests, self.failures, self.latencies))
        horizon = max(SCENARIO.latency_window_s, SCENARIO.abort.window_s)
        while self.window and self.window[0][0] <= sec - horizon:
            self.window.popleft()
        lat = sorted(
            x for s, _, _, xs in self.window if s > sec - SCENARIO.latency_window_s for x in xs
        )
        p50 = p95 = p99 = None
        if len(lat) >= 2:
            cuts = quantiles(lat, n=100, method="inclusive")
            p50, p95, p99 = cuts[49], cuts[94], cuts[98]
        elif lat:
            p50 = p95 = p99 = lat[0]
        runner = self.env.runner
        append(
            OUT / "load.jsonl",
            LoadPoint(
                ts=now,
                users=runner.user_count if runner else 0,
                requests=self.requests,
                failures=self.failures,
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
            ),
        )
        self.requests = self.failures = 0
        self.latencies = []

    def abort_reason(self) -> str | None:
        rule = SCENARIO.abort
        now = time.time()
        recent = [w for w in self.window if w[0] > now - rule.window_s]
        n = sum(w[1] for w in recent)
        failed = sum(w[2] for w in recent)
        if n >= 5 and failed / n >= rule.fail_ratio:
            return (
                f"target failing: {failed}/{n} requests failed in the last {rule.window_s:g} s "
                f"(abort at {rule.fail_ratio:.0%})"
            )
        runner = self.env.runner
        busy = runner is not None and runner.user_count > 0
        if busy and now - max(self.last_ok, self.started) > rule.stall_s:
            return f"target not answering: no successful response for {rule.stall_s:g} s"
        return None

    def loop(self) -> None:
        while True:
            gevent.sleep(1.0 - (time.time() % 1.0))
            self.flush()
            reason = self.abort_reason()
            if reason:
                (OUT / "abort.json").write_text(json.dumps({"reason": reason, "ts": time.time()}))
                if self.env.runner is not None:
                    self.env.runner.quit()
                return


@events.test_start.add_listener
def _start(environment: Environment, **_: object) -> None:
    recorder = Recorder(environment)
    environment.events.request.add_listener(recorder.on_request)
    (OUT / "started.json").write_text(json.dumps({"ts": recorder.started}))
    gevent.spawn(recorder.loop)
    environment.events.test_stop.add_listener(lambda **_: recorder.flush())

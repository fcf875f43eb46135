"""Locust users, one per service. Imports locust (gevent): only the Locust process loads this.

Closed loop without think time: each user keeps one request in flight, so the user count is
the concurrency the autoscalers see (Serve's ongoing requests, the HPA's in-flight metric).
Every response is checked against the service's schema with `catch_response`; URLs are
grouped with `name=` so statistics stay one row per endpoint.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

from loadtests import payloads

# Seconds past the service's request timeout before a user gives up: the gateway's own margin
# (sandbox/gateway.py SERVER_TIMEOUT_MARGIN_S, 5 s) and then some.
TIMEOUT_MARGIN_S = 10.0


class _ServiceUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)
    # A hung target fails requests after this long instead of holding users forever (s); a run
    # sets it to the service's own request timeout + TIMEOUT_MARGIN_S, so that the service, not
    # the client, answers a request it cannot serve in time.
    network_timeout = 20.0
    connection_timeout = 5.0

    path: ClassVar[str]
    mix: ClassVar[str] = "mixed"  # the scenario's `payload` (loadtests/payloads.py)

    def on_start(self) -> None:
        self.rng = random.Random()

    def make_request(self) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, body: dict[str, Any], status: int, text: str) -> str | None:
        """None for a valid answer to `body`, else what is wrong."""
        raise NotImplementedError

    @task
    def call(self) -> None:
        body = self.make_request()
        with self.client.post(self.path, json=body, name=self.path, catch_response=True) as resp:
            if not resp.status_code:  # no HTTP answer: refused, reset, timed out
                resp.failure(f"no response: {getattr(resp, 'error', None)!r}")
                return
            problem = self.check(body, resp.status_code or 0, resp.text or "")
            if problem:
                resp.failure(problem)
            else:
                resp.success()


class EmbedderUser(_ServiceUser):
    path = payloads.EMBED_PATH

    def make_request(self) -> dict[str, Any]:
        return payloads.embed_request(self.rng, self.mix)

    def check(self, body: dict[str, Any], status: int, text: str) -> str | None:
        return payloads.check_embeddings(body, status, text)


class ClassifierUser(_ServiceUser):
    path = payloads.PREDICT_PATH
    n_features: ClassVar[int] = 4

    def make_request(self) -> dict[str, Any]:
        return payloads.classify_request(self.rng, self.n_features, self.mix)

    def check(self, body: dict[str, Any], status: int, text: str) -> str | None:
        return payloads.check_predictions(body, status, text)


USERS: dict[str, type[_ServiceUser]] = {"embedder": EmbedderUser, "classifier": ClassifierUser}

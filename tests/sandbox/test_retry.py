"""The sandbox's one retry policy (sandbox/retry.py), against real HTTP servers on loopback: a
transient failure (a 5xx, a refused connection) is retried, anything else raises at once, a
failure past the budget names what failed; its users (PromQL, the canary checks, Serve's API)
survive a blip, and a check against a dead Prometheus fails instead of raising."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from sandbox_helpers import dead_url, scripted

from gantry.service import ServiceSpec
from gantry.stack import load_stack_file
from sandbox import retry, serving
from sandbox.analysis import run_check
from sandbox.errors import SandboxError, Unavailable
from sandbox.lifecycle import Plan
from sandbox.prometheus import PromQL
from sandbox.serving import ServeApi

REPO = Path(__file__).resolve().parents[2]
# The policy, shrunk for tests: waits 10, 20, 40, 50, 50... ms for at most 0.3 s.
FAST = retry.Policy(budget_s=0.3, first_wait_s=0.01, max_wait_s=0.05)
PROM_ANSWER = json.dumps(
    {"status": "success", "data": {"resultType": "vector", "result": [{"value": [0, "99.5"]}]}}
)


def get(url: str) -> requests.Response:
    r = requests.get(url, timeout=2)
    r.raise_for_status()
    return r


@pytest.fixture(scope="module")
def embedder() -> ServiceSpec:
    return Plan.from_config(load_stack_file(REPO / "Pulumi.sandbox.yaml")).specs["embedder"]


# ---------------------------------------------------------------- call


def test_a_5xx_is_retried_until_the_api_answers() -> None:
    with scripted((500, "busy"), (503, "starting")) as api:
        assert retry.call(lambda: get(api.url), "the test API", FAST).status_code == 200
    assert api.hits == 3


def test_a_refused_connection_is_retried() -> None:
    with scripted() as api:
        urls = iter([dead_url(), dead_url(), api.url])
        assert retry.call(lambda: get(next(urls)), "the test API", FAST).status_code == 200
    assert api.hits == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [((404, "no such route"), requests.HTTPError), ((200, "<html>"), ValueError)],
    ids=["4xx", "malformed"],
)
def test_a_4xx_or_a_malformed_answer_raises_at_once(
    answer: tuple[int, str], error: type[Exception]
) -> None:
    with scripted(answer) as api, pytest.raises(error):
        retry.call(lambda: get(api.url).json(), "the test API", FAST)
    assert api.hits == 1


def test_past_the_budget_it_raises_naming_what_failed_and_why() -> None:
    started = time.monotonic()
    with scripted(then=(500, "still busy")) as api, pytest.raises(Unavailable) as err:
        retry.call(lambda: get(api.url), "the test API", FAST)
    assert time.monotonic() - started < 1
    assert isinstance(err.value, SandboxError)
    assert api.hits > 3
    assert str(err.value).startswith(f"the test API: still failing after {api.hits} attempts in")
    assert str(err.value).endswith("s: HTTP 500: still busy")


# ---------------------------------------------------------------- until


def test_until_returns_the_first_truthy_answer_through_transient_errors() -> None:
    answers = [(500, "busy"), (200, '{"ready": false}')]
    with scripted(*answers, then=(200, '{"ready": true}')) as api:
        urls = iter([dead_url(), api.url, api.url, api.url])
        assert retry.until(lambda: get(next(urls)).json()["ready"], 2, "x", 0.01) is True
    assert api.hits == 3


def test_until_times_out_saying_what_within_how_long_and_the_last_error() -> None:
    url = dead_url()
    with pytest.raises(SandboxError) as err:
        retry.until(lambda: get(url), 0.2, "the API did not come up", 0.05, detail="see its log")
    assert str(err.value).startswith(
        "the API did not come up within 0.2s; see its log; last error: ConnectionError"
    )


def test_until_raises_anything_but_a_transient_error_at_once() -> None:
    calls = []

    def probe() -> bool:
        calls.append(1)
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        retry.until(probe, 5, "x", 0.01)
    assert len(calls) == 1


def test_until_waits_on_the_injected_clock() -> None:
    t = [1000.0]

    def sleep(s: float) -> None:
        t[0] += s

    clock = retry.Clock(now=lambda: t[0], sleep=sleep)
    started = time.monotonic()
    with pytest.raises(SandboxError, match=r"^never within 60s$"):
        retry.until(lambda: False, 60, "never", 1, clock=clock)
    assert 1059 <= t[0] <= 1060  # probed every second, none after the deadline
    assert time.monotonic() - started < 1  # and never really slept


# ---------------------------------------------------------------- its users


def test_a_promql_query_survives_one_500() -> None:
    with scripted((500, "busy"), then=(200, PROM_ANSWER)) as prom:
        assert PromQL(prom.url, FAST).scalar("up") == 99.5
    assert prom.hits == 2


def test_a_check_against_a_dead_prometheus_fails_closed(embedder: ServiceSpec) -> None:
    check = embedder.canary.metrics[0]
    result = run_check(PromQL(dead_url(), FAST), embedder, "v2", check)
    assert (result.value, result.passed) == (None, False)
    assert result.detail is not None
    assert result.detail.startswith("query failed: Prometheus (http://127.0.0.1:")
    assert "still failing" in result.detail and "ConnectionError" in result.detail


def test_a_query_prometheus_rejects_fails_its_check_at_once_with_the_reason(
    embedder: ServiceSpec,
) -> None:
    rejected = (400, '{"status": "error", "errorType": "bad_data", "error": "parse error"}')
    with scripted(rejected) as prom:
        result = run_check(PromQL(prom.url, FAST), embedder, "v2", embedder.canary.metrics[0])
    assert prom.hits == 1 and not result.passed
    assert result.detail is not None and result.detail.startswith("query failed: HTTP 400")
    assert "parse error" in result.detail


def test_serve_deploy_retries_a_dashboard_500_and_reports_a_rejection_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(serving, "DEPLOY", FAST)
    with scripted((500, "Serve module restarting")) as dashboard:
        ServeApi(dashboard.url).deploy({"applications": []})
    assert dashboard.hits == 2
    rejected = r"^Serve rejected the config \(400\): no route_prefix$"
    with (
        scripted((400, "no route_prefix")) as dashboard,
        pytest.raises(SandboxError, match=rejected),
    ):
        ServeApi(dashboard.url).deploy({"applications": []})
    assert dashboard.hits == 1


def apps(**states: str) -> tuple[int, str]:
    status = {name.replace("_", "-"): {"status": s} for name, s in states.items()}
    return 200, json.dumps({"applications": status})


def test_serve_waits_survive_a_dashboard_500(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving, "POLL_S", 0.01)
    with scripted((500, "busy"), apps(embedder_v1="RUNNING"), then=apps()) as dashboard:
        ServeApi(dashboard.url).wait_deleted(["embedder-v1"], 5)
    assert dashboard.hits == 3
    deploying = apps(embedder_v2="DEPLOYING")
    with scripted((502, "busy"), deploying, then=apps(embedder_v2="RUNNING")) as dashboard:
        running: dict[str, Any] = ServeApi(dashboard.url).wait_running(["embedder-v2"], 5)
    assert running["embedder-v2"]["status"] == "RUNNING"
    with scripted(then=deploying) as dashboard, pytest.raises(SandboxError) as err:
        ServeApi(dashboard.url).wait_running(["embedder-v2"], 0.1)
    assert str(err.value) == "Serve apps not RUNNING within 0.1s; {'embedder-v2': 'DEPLOYING'}"

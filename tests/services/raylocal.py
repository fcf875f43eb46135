"""A private local Ray for tests: loopback only, free ports, own temp dir, stopped by PID.

Other Ray instances may run on the same machine, so nothing here uses a default Ray port or
touches a Ray it did not start (no `ray stop`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"

# Ray binds the host's interface address unless this is 0 (seen even with --node-ip-address).
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",  # explicit: a stray ~/.ray/auth_token must not change behaviour
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def free_port_range(size: int) -> tuple[int, int]:
    """A block of `size` free ports below Linux's ephemeral range (for Ray's worker ports)."""
    for _ in range(50):
        start = random.randrange(20000, 32000 - size)
        try:
            with ExitStack() as stack:
                for port in range(start, start + size):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            return start, start + size - 1
        except OSError:
            continue
    raise RuntimeError("no free port range for Ray workers")


@dataclass
class LocalRay:
    temp_dir: Path
    gcs_port: int
    metrics_port: int
    proc: subprocess.Popen[bytes]
    log: Path
    _tmp: tempfile.TemporaryDirectory[str] = field(repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def pids(self) -> set[int]:
        """Every live process this Ray consists of (the `ray start --block` tree)."""
        try:
            root = psutil.Process(self.proc.pid)
            return {root.pid, *(c.pid for c in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def listeners(self) -> list[tuple[str, int, str]]:
        """(address, port, process name) of every TCP listener of this Ray's processes (ss)."""
        pids = self.pids()
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
        found = []
        for line in out.splitlines():
            cols = line.split()
            if len(cols) < 6 or not any(f"pid={p}," in cols[5] for p in pids):
                continue
            host, _, port = cols[3].rpartition(":")
            name = cols[5].split('"')[1] if '"' in cols[5] else ""
            found.append((host.strip("[]"), int(port), name))
        return found

    def stop(self) -> None:
        procs = [psutil.Process(p) for p in self.pids() if psutil.pid_exists(p)]
        for p in procs:
            with suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            with suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        self._tmp.cleanup()


def start_ray(
    num_cpus: int = 4,
    attempts: int = 3,
    num_gpus: int = 0,
    resources: dict[str, float] | None = None,
) -> LocalRay:
    """Start a private Ray. Retried: on an overloaded machine `ray start` gives up after 30 s
    waiting for its raylet (a constant inside Ray). `num_gpus`: logical GPUs (none need exist);
    `resources`: custom resources (e.g. the sandbox's `pool:<name>`)."""
    for attempt in range(attempts):
        try:
            return _start_ray(num_cpus, num_gpus, resources or {})
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _start_ray(
    num_cpus: int, num_gpus: int, resources: dict[str, float], timeout_s: float = 120
) -> LocalRay:
    tmp = tempfile.TemporaryDirectory(prefix="gr-", dir="/tmp")  # short: unix socket path limit
    temp_dir = Path(tmp.name)
    (gcs, node_mgr, obj_mgr, rt_env, agent_grpc, agent_http, metrics, client) = free_ports(8)
    lo, hi = free_port_range(100)
    log = temp_dir / "ray-start.log"
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={gcs}", f"--temp-dir={temp_dir}",
        f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", "--include-dashboard=false",
        f"--resources={json.dumps(resources)}",
        f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}",
        f"--runtime-env-agent-port={rt_env}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--dashboard-agent-listen-port={agent_http}", f"--metrics-export-port={metrics}",
        f"--ray-client-server-port={client}", f"--min-worker-port={lo}", f"--max-worker-port={hi}",
        "--object-store-memory=200000000", "--disable-usage-stats",
    ]  # fmt: skip
    # PYTHONPATH: workers import test-only apps (tests.services.router_app) besides `services`.
    env = {**os.environ, **LOOPBACK_ENV, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    ray = LocalRay(temp_dir, gcs, metrics, proc, log, tmp)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            ray.stop()
            raise RuntimeError(f"ray start exited {proc.returncode}:\n{tail}")
        if b"Ray runtime started" in log.read_bytes():
            return ray
        time.sleep(0.5)
    tail = log.read_text()[-3000:]
    ray.stop()
    raise RuntimeError(f"ray start did not come up in {timeout_s}s:\n{tail}")

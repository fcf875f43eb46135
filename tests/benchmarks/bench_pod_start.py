"""Run a serving pod's own commands on this machine and time them (no Kubernetes needed).

    .venv/bin/python tests/benchmarks/bench_pod_start.py [classifier|embedder]

Takes the container command and the pod's serve config exactly as
infra/serving/manifests.py renders them, swaps the pinned ports for free ones and the host for
127.0.0.1 (other Rays share this machine), then measures: start -> readiness 200 (what the
startupProbe waits for), liveness route, the metrics port serving Serve's in-flight gauge, RSS of
the pod's process tree, and termination: 32 requests in flight answered during preStop, then
SIGINT (the images' STOPSIGNAL) and how long `serve run` takes to exit (vs the grace period).
Seen here: SIGINT while requests were still in flight dropped them ("Server disconnected"):
Serve's shutdown closes the proxy's connections; hence preStop outlasts the request timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
import yaml

from gantry.service import load_service
from infra.serving import manifests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def main(name: str) -> None:
    spec = load_service(name)
    work = Path(tempfile.mkdtemp(prefix="gp-", dir="/tmp"))
    http, metrics = free_port(), free_port()
    cfg = manifests.pod_serve_config(spec)
    cfg["http_options"].update(host="127.0.0.1", port=http)
    (work / "serve.yaml").write_text(yaml.safe_dump(cfg))

    command = manifests.ray_start_command(spec)
    ports = {**manifests.RAY_PORTS, "metrics": spec.serve.metrics_port}
    for port in ports.values():
        command = re.sub(rf"=({port})\b", f"={free_port()}", command)
    lo, hi = manifests.RAY_WORKER_PORTS
    taken = {int(p) for p in re.findall(r"=(\d{4,5})\b", command)}
    base = free_port()
    while any(base <= p < base + 100 for p in taken | {http, metrics}):
        base = free_port()
    command = command.replace(f"--min-worker-port={lo}", f"--min-worker-port={base}")
    command = command.replace(f"--max-worker-port={hi}", f"--max-worker-port={base + 99}")
    command = re.sub(r"--metrics-export-port=\d+", f"--metrics-export-port={metrics}", command)
    command = command.replace(manifests.RAY_TEMP_DIR, str(work / "ray"))
    command = command.replace(f"{manifests.SERVE_CONFIG_DIR}/serve.yaml", str(work / "serve.yaml"))
    gcs = re.search(r"--port=(\d+)", command)
    assert gcs
    address = f"127.0.0.1:{gcs[1]}"
    command = command.replace("ray start --head", "ray start --head --node-ip-address=127.0.0.1")
    command = command.replace("--address=auto", f"--address={address}")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "RAY_ADDRESS": address,
    }
    print(f"pod command ({name}):\n  {command}\n")
    start = time.monotonic()
    log = (work / "pod.log").open("w")
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command], env=env, start_new_session=True, stdout=log, stderr=log
    )
    base_url = f"http://127.0.0.1:{http}"
    try:
        ready_s = None
        while time.monotonic() - start < 300:
            if proc.poll() is not None:
                raise SystemExit(f"pod command exited {proc.returncode}; see {work}/pod.log")
            try:
                if requests.get(base_url + spec.serve.readiness_path, timeout=2).status_code == 200:
                    ready_s = time.monotonic() - start
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        if ready_s is None:
            raise SystemExit(f"not ready within 300 s; see {work}/pod.log")
        health = requests.get(base_url + spec.serve.health_path, timeout=5).status_code
        smoke = spec.canary.webhooks.smoke
        assert smoke is not None
        answer = requests.request(
            smoke.request.method, base_url + smoke.request.path, json=smoke.request.body, timeout=30
        )
        smoke_ok = answer.status_code
        scraped = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
        rss = tree_rss(proc.pid) + sum(
            tree_rss(p.pid)
            for p in psutil.process_iter(["cmdline"])
            if str(work) in " ".join(p.info["cmdline"] or []) and p.pid != proc.pid
        )
        budget = spec.probes.startup.period_s * spec.probes.startup.failure_threshold
        print(f"ready after          {ready_s:.1f} s (startupProbe budget {budget} s)")
        print(f"liveness {spec.serve.health_path}   HTTP {health}")
        print(f"smoke request        HTTP {answer.status_code} {answer.text[:200]}")
        print(f"metrics port         ray_serve_num_ongoing_http_requests present: "
              f"{'ray_serve_num_ongoing_http_requests' in scraped}")  # fmt: skip
        print(
            f"RSS of the pod tree  {rss / 2**30:.2f} GiB (request {spec.resources.memory_gib} GiB)"
        )

        # Termination as Kubernetes runs it: requests in flight; preStop (endpoints removed, so
        # nothing new arrives) lasts until they have finished; then the stop signal (SIGINT, the
        # images' STOPSIGNAL) makes `serve run` shut Serve down.
        def call() -> tuple[int, float]:
            assert smoke is not None
            r, t = smoke.request, time.monotonic()
            code = requests.request(
                r.method, base_url + r.path, json=r.body, timeout=60
            ).status_code
            return code, time.monotonic() - t

        with ThreadPoolExecutor(32) as pool:
            results = [f.result() for f in [pool.submit(call) for _ in range(32)]]
        codes, slowest = [c for c, _ in results], max(t for _, t in results)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=spec.termination_grace_s)
        took = time.monotonic() - t0
        delay, timeout = spec.serve.drain_delay_s, spec.request_timeout_s
        print(f"in flight at preStop 32 requests: {codes.count(smoke_ok)} answered {smoke_ok}, "
              f"slowest {slowest:.1f} s (preStop waits {spec.pre_stop_s} s: "
              f"{delay} s + request timeout {timeout:g} s)")  # fmt: skip
        print(f"stop signal          serve run exited {took:.1f} s after SIGINT; grace period "
              f"{spec.termination_grace_s} s = preStop + {spec.graceful_shutdown_s:g} s Serve "
              "graceful shutdown + 15 s")  # fmt: skip
    finally:
        # Stop exactly this pod's processes (never `ray stop`: it stops every Ray here).
        ours = [
            p for p in psutil.process_iter(["cmdline"])
            if str(work) in " ".join(p.info["cmdline"] or [])
        ]  # fmt: skip
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        for p in ours:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        _, alive = psutil.wait_procs(ours, timeout=10)
        for p in alive:
            p.kill()
        log.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "classifier")

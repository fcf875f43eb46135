"""Runs inside a private PID, network and mount namespace (test_pod_command.py): starts the
serving container's command as the Deployment gives it, drives the pod's HTTP port like the
kubelet and a client would, stops it with the image's STOPSIGNAL, and writes what it saw to
RESULT (JSON). Being PID 1, its exit ends every process it started.

    python pod_driver.py COMMAND HTTP_PORT METRICS_PORT RESULT
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import requests

from tests.procmem import memory_by_process

READY_TIMEOUT_S = 300  # two model loads on a busy 2-core machine
METRIC_TIMEOUT_S = 40  # HAProxy's gauge is sampled every 10 s, exported every 10 s
DRAIN_TIMEOUT_S = 60
KILL_LOAD_S = 12  # s of load around a replica's SIGKILL
REPLACE_TIMEOUT_S = 90  # a new replica: Serve's health check (10 s) + a model load
# Ray's HAProxy stats page (RAY_SERVE_HAPROXY_STATS_PORT's default; uri /stats).
HAPROXY_STATS_PORT = 8404


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(f"{what} within {timeout_s} s")


def listeners() -> dict[str, str]:
    """`address:port` -> process name, for every TCP listener in this namespace."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        cols = line.split()
        found[cols[3]] = cols[5].split('"')[1] if len(cols) > 5 and '"' in cols[5] else ""
    return found


def replicas() -> list[psutil.Process]:
    """The pod's Serve replicas (Ray titles each process `ray::ServeReplica:<app>:<name>`)."""
    found = []
    for p in psutil.process_iter():
        try:
            if " ".join(p.cmdline()).startswith("ray::ServeReplica:"):
                found.append(p)
        except psutil.Error:
            continue
    return found


def kill_a_replica_under_load(base: str, body: dict[str, Any]) -> dict[str, Any]:
    """SIGKILL one of the pod's replicas while 8 clients send requests for KILL_LOAD_S more
    seconds: every status code the clients saw, and how many replicas run after."""
    stop = time.monotonic() + KILL_LOAD_S

    def client(_: int) -> list[str]:
        codes = []
        with requests.Session() as s:
            while time.monotonic() < stop:
                try:
                    r = s.post(f"{base}/v1/embeddings", json=body, timeout=60)
                    codes.append(str(r.status_code))
                except requests.ConnectionError:
                    codes.append("closed")  # no status line: what the mesh's `reset` retries
        return codes

    with ThreadPoolExecutor(8) as pool:
        runs = pool.map(client, range(8))
        time.sleep(2)  # requests in flight on every replica
        running = replicas()
        serving = max(up_replicas(), len(running))  # a started one may not be checked UP yet
        victim = running[0]
        victim.kill()
        codes = [c for run in runs for c in run]
    # The pod goes on as it was before the kill (stopping it while a replica is still starting
    # is another test): as many replicas up in HAProxy as before.
    killed_at = time.monotonic()
    wait_for(lambda: up_replicas() >= serving, REPLACE_TIMEOUT_S, "the killed replica replaced")
    replaced_s = round(time.monotonic() - killed_at, 1)
    return {"killed": victim.pid, "codes": dict(Counter(codes)), "serving": serving,
            "replaced_after_load_s": replaced_s}  # fmt: skip


def up_replicas() -> int:
    """Replicas Ray's HAProxy sends requests to: servers UP in its stats, backups left out."""
    text = requests.get(f"http://127.0.0.1:{HAPROXY_STATS_PORT}/stats;csv", timeout=5).text
    return sum(
        1
        for row in csv.DictReader(io.StringIO(text.lstrip("# ")))
        if row["svname"] not in ("FRONTEND", "BACKEND") and row["bck"] == "0"
        and row["status"] == "UP" and row["pxname"].startswith("http-")
    )  # fmt: skip


def main() -> None:
    command, port, metrics_port, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {}
    started = time.monotonic()
    pod = subprocess.Popen(["/bin/sh", "-c", command])
    try:
        ready = wait_for(
            lambda: (r := requests.get(f"{base}/ready", timeout=5)).ok and r.json(),
            READY_TIMEOUT_S,
            "/ready never answered 200",
        )
        result["ready"], result["ready_s"] = ready, round(time.monotonic() - started, 1)
        result["healthz"] = requests.get(f"{base}/-/healthz", timeout=5).status_code
        result["listeners"] = listeners()
        one = requests.post(f"{base}/v1/embeddings", json={"input": "a pod"}, timeout=30)
        result["one"] = {"status": one.status_code, "body": one.json()}
        bad = requests.post(f"{base}/v1/embeddings", json={"input": []}, timeout=30)
        result["bad"] = {"status": bad.status_code, "body": bad.json()}
        body = {"input": ["one request of many", "a second sentence"]}
        with ThreadPoolExecutor(16) as pool:
            codes = list(
                pool.map(
                    lambda _: requests.post(f"{base}/v1/embeddings", json=body, timeout=60),
                    range(64),
                )
            )
        result["concurrent"] = sorted({r.status_code for r in codes})

        def scraped() -> str | None:
            text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            return text if "ray_serve_num_ongoing_http_requests{" in text else None

        text = wait_for(scraped, METRIC_TIMEOUT_S, "the HPA's in-flight gauge was never exported")
        result["metrics"] = [
            line
            for line in text.splitlines()
            if line.startswith(("ray_serve_num_ongoing_http", "ray_gantry_requests_total"))
        ]
        result["replica_kill"] = kill_a_replica_under_load(base, body)
        # After the load, as a pod runs: every process in this namespace but the driver.
        pids = [p for p in psutil.pids() if p != os.getpid()]
        result["pss_mib_by_process"] = {
            name: round(pss, 1) for name, (_, pss) in memory_by_process(pids).items()
        }
        started = time.monotonic()
        pod.send_signal(signal.SIGINT)  # the image's STOPSIGNAL
        result["exit_code"] = pod.wait(DRAIN_TIMEOUT_S)
        result["stop_s"] = round(time.monotonic() - started, 1)
    except Exception as err:  # reported to the test, which fails naming it
        result["error"] = f"{type(err).__name__}: {err}"
    finally:
        with open(out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()

"""Runs inside a private PID, network and mount namespace (test_pod_command.py): starts the
serving container's command as the Deployment gives it, drives the pod's HTTP port like the
kubelet and a client would, stops it with the image's STOPSIGNAL, and writes what it saw to
RESULT (JSON). Being PID 1, its exit ends every process it started.

    python pod_driver.py COMMAND HTTP_PORT METRICS_PORT RESULT
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import requests

from tests.procmem import memory_by_process

READY_TIMEOUT_S = 300  # two model loads on a busy 2-core machine
METRIC_TIMEOUT_S = 40  # HAProxy's gauge is sampled every 10 s, exported every 10 s
DRAIN_TIMEOUT_S = 60


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

"""Benchmark the embedded sandbox with the shipped stack (Pulumi.sandbox.yaml), as a user runs it.

Measures (goals from the sandbox issue):
- `up` to every service ready (goal <= 60 s on a 2-core machine);
- idle memory of the whole process tree Gantry started, RSS and PSS (goal <= 3 GiB RSS);
- the embedder's scale-out decision after a load step: seconds from the step (16 closed-loop
  clients) until Serve's controller starts a second replica (goal <= 10 s), plus when that
  replica runs and when the GPU pool gained a node;
- `down` until no process is left.

Run: .venv/bin/python tests/benchmarks/bench_sandbox.py [--state-dir DIR] [--idle-s 20]
Uses its own state dir and free ports, so it can run beside a developer's sandbox.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "sandbox"))

from sandbox_helpers import Load  # noqa: E402

from gantry.sandbox_state import SandboxState  # noqa: E402
from gantry.stack import load_stack_file  # noqa: E402
from sandbox import lifecycle, procs  # noqa: E402
from sandbox.state import Paths  # noqa: E402

EMBED = {"input": "The quick brown fox jumps over the lazy dog.", "model": "all-MiniLM-L6-v2"}
GIB = 1024**3


def tree_memory(state: SandboxState) -> tuple[float, float, int]:
    """(RSS GiB, PSS GiB, processes) of every process of the sandbox."""
    rss = pss = 0
    members = procs.members(state.procs)
    for p in members:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            rss += info.rss
            pss += info.pss
    return rss / GIB, pss / GIB, len(members)


def embedder_state(serve_api: str) -> tuple[str, int, int]:
    """(deployment status, RUNNING replicas, all replicas) of embedder-v1's Embedder."""
    apps = requests.get(serve_api, timeout=10).json()["applications"]
    dep = apps["embedder-v1"]["deployments"]["Embedder"]
    replicas = dep.get("replicas") or []
    running = sum(1 for r in replicas if r["state"] == "RUNNING")
    return dep["status"], running, len(replicas)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state-dir", type=Path, default=None)
    ap.add_argument("--idle-s", type=float, default=20, help="settle time before measuring RSS")
    args = ap.parse_args()
    root = args.state_dir or Path(tempfile.mkdtemp(prefix="gantry-bench-"))
    paths = Paths(root)
    plan = lifecycle.Plan.from_config(load_stack_file(REPO / "Pulumi.sandbox.yaml"))
    steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(msg: str) -> Iterator[None]:
        t = time.monotonic()
        yield
        steps[msg] = round(time.monotonic() - t, 1)
        print(f"  {steps[msg]:6.1f} s  {msg}", flush=True)

    results: dict[str, object] = {}
    print(f"up (state dir {root})", flush=True)
    t0 = time.monotonic()
    state = lifecycle.up(plan, paths, step)
    results["up_to_ready_s"] = round(time.monotonic() - t0, 1)
    results["up_steps_s"] = steps
    try:
        time.sleep(args.idle_s)
        rss, pss, n = tree_memory(state)
        results["idle_rss_gib"], results["idle_pss_gib"], results["idle_processes"] = (
            round(rss, 2),
            round(pss, 2),
            n,
        )
        print(f"idle: {rss:.2f} GiB RSS, {pss:.2f} GiB PSS in {n} processes", flush=True)

        serve_api = state.urls["serve_api"]
        nodes_before = lifecycle.nodes_by_pool(state.urls["nodes_api"]).get("gpu", 0)
        decided = running = node = None
        url = f"{state.routes['embedder']}/v1/embeddings"
        with Load(url, EMBED, clients=16) as load:
            t = time.monotonic()
            while time.monotonic() - t < 180 and (running is None or node is None):
                status, ok, total = embedder_state(serve_api)
                now = round(time.monotonic() - t, 2)
                if decided is None and (total > 1 or status == "UPSCALING"):
                    decided = now
                if running is None and ok > 1:
                    running = now
                if (
                    node is None
                    and lifecycle.nodes_by_pool(state.urls["nodes_api"]).get("gpu", 0)
                    > nodes_before
                ):
                    node = now
                time.sleep(0.25)
            rss_load, pss_load, _ = tree_memory(state)
        results["scale_out_decision_s"] = decided
        results["second_replica_running_s"] = running
        results["gpu_node_added_s"] = node
        results["load_requests"] = dict(load.outcomes)
        results["rss_under_load_gib"] = round(rss_load, 2)
        results["pss_under_load_gib"] = round(pss_load, 2)
        print(
            f"load step: scale-out decision {decided} s, 2nd replica running {running} s, "
            f"GPU node added {node} s; {dict(load.outcomes)}",
            flush=True,
        )
    finally:
        t = time.monotonic()
        lifecycle.down(paths)
        results["down_s"] = round(time.monotonic() - t, 1)
        results["left_after_down"] = len(procs.members(state.procs))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Services benchmark: bare batched inference vs Ray Serve vs a naive FastAPI/uvicorn peer.

Method (see docs/performance.md): one sentence (8-40 words) per request, closed-loop load from
`wrk` with a Lua POST script (≈0.01 core, so the generator does not steal the CPU it measures),
all on the same cores. For each serving setup: throughput, p50, p99 at concurrency 8 and 32, and
RSS/PSS of the serving process tree after load. Ray runs privately (loopback, free ports, own temp
dir) via tests/services/raylocal.py and deploys services/embedder/serve.yaml with per-variant
overrides, exactly as the tests do, with the pod's Ray env (service.yaml `serve.ingress`: HAProxy
ingress; `*-proxy`: Serve's Python proxy). `sandbox` is the embedded sandbox's front door
instead (`gantry sandbox up` with the shipped stack, its own state dir), at concurrency 1 and 32.
Everything runs in a network namespace of its own (tests/netns.py), because HAProxy ingress binds
its stats and metrics ports on every interface.

    .venv/bin/python tests/benchmarks/bench_services.py                 # everything, once
    .venv/bin/python tests/benchmarks/bench_services.py --repeat 2 --duration 20
    .venv/bin/python tests/benchmarks/bench_services.py --only bare,serve,naive-2

Needs `wrk` (Debian/Ubuntu: `apt-get install -y wrk`). Results: a table, plus JSON under
.gantry/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gantry.service import load_service  # noqa: E402
from tests import netns  # noqa: E402
from tests.procmem import memory_by_process, totals  # noqa: E402
from tests.services.raylocal import LOOPBACK_ENV, free_ports, start_ray  # noqa: E402
from tests.services.servedeploy import app_from_serve_yaml, serve_run, wait_ready  # noqa: E402

console = Console()
IN_NETNS = "GANTRY_BENCH_NETNS"  # set once the benchmark runs in its own network namespace
METRICS_REPORT_MS = 1000  # Ray metrics report interval in the Serve setups (ms)
WORDS = [
    "the",
    "a",
    "engineer",
    "cluster",
    "model",
    "request",
    "latency",
    "budget",
    "river",
    "mountain",
    "quietly",
    "quickly",
    "deploys",
    "rolls",
    "back",
    "scales",
    "measures",
    "reports",
    "under",
    "over",
    "before",
    "after",
    "because",
    "while",
    "team",
    "platform",
    "service",
    "canary",
    "rollout",
    "node",
    "pool",
    "replica",
    "gateway",
    "metric",
    "alert",
    "dashboard",
    "runs",
    "fails",
    "recovers",
    "serves",
    "batches",
    "tokens",
    "sentence",
    "embedding",
    "vector",
    "search",
    "index",
    "query",
]


def sentences(n: int = 512, seed: int = 3) -> list[str]:
    """Deterministic pseudo-sentences of 8 to 40 words (uniform), like mixed real traffic."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))).capitalize() + "."
        for _ in range(n)
    ]


@dataclass
class Result:
    setup: str
    concurrency: int | None
    rps: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    rss_mib: float | None = None
    pss_mib: float | None = None
    # CPU (user+system, all processes of the setup) per request, ms·core. Unlike req/s this barely
    # moves when other jobs share the cores, so ratios of it are the robust comparison here.
    cpu_ms: float | None = None
    proxy_cpu_ms: float | None = None  # Ray's HTTP proxy's share of cpu_ms
    notes: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- load generation (wrk + Lua)

LUA = """
local bodies = {}
for line in io.lines("%s") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
"""


def lua_script(workdir: Path) -> Path:
    bodies = workdir / "bodies.jsonl"
    bodies.write_text("".join(json.dumps({"input": s}) + "\n" for s in sentences()))
    script = workdir / "post.lua"
    script.write_text(LUA % bodies)
    return script


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str, concurrency: int, duration_s: int, script: Path
) -> tuple[float, float, float, int]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{duration_s}s", "--timeout", "30s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=duration_s + 60,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, p50, p99, errors, done


def tree_memory(pids: set[int]) -> tuple[float, float]:
    """RSS and PSS (MiB) summed over processes."""
    return totals(memory_by_process(pids))


def cpu_seconds(pids: set[int], match: str = "") -> float:
    """User+system CPU seconds so far of the processes (optionally only those whose command line
    contains `match`)."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if match and match not in " ".join(proc.cmdline()):
                continue
            t = proc.cpu_times()
            total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measure(url: str, conc: int, duration_s: int, script: Path, pids: set[int]) -> Result:
    """One wrk run, with the CPU the serving processes spent on it."""
    cpu0, proxy0 = cpu_seconds(pids), cpu_seconds(pids, "ProxyActor")
    rps, p50, p99, errors, done = wrk(url, conc, duration_s, script)
    cpu1, proxy1 = cpu_seconds(pids), cpu_seconds(pids, "ProxyActor")
    result = Result("", conc, rps, p50, p99, errors)
    result.cpu_ms = (cpu1 - cpu0) * 1000 / max(done, 1)
    result.proxy_cpu_ms = (proxy1 - proxy0) * 1000 / max(done, 1) if proxy1 else None
    return result


def process_tree(root: int) -> set[int]:
    proc = psutil.Process(root)
    return {root, *(c.pid for c in proc.children(recursive=True))}


# ---------------------------------------------------------------- setups


def bench_bare(threads: int) -> list[Result]:
    """In-process batched inference on `threads` torch threads: the ceiling for any server."""
    import statistics

    import torch

    from services.embedder.model import load_encoder

    torch.set_num_threads(threads)
    texts = sentences()[:256]
    out = []
    for version in ("v1", "v2"):
        encoder = load_encoder(version, "cpu", threads)  # type: ignore[arg-type]
        for batch, bucket in ((1, 0), (32, 0), (32, SHIPPED_BUCKET)):
            if batch == 1 and version == "v2":
                continue
            encoder.encode(texts[:batch], bucket)  # warm-up
            n = 64 if batch == 1 else 256
            calls_ms = []
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(0, n, batch):
                call = time.perf_counter()
                encoder.encode(texts[i : i + batch], bucket)
                calls_ms.append((time.perf_counter() - call) * 1000)
            rate = n / (time.perf_counter() - start)
            cpu_ms = (time.process_time() - cpu) * 1000 / n
            name = f"bare {version} batch {batch}" + (f" bucket {bucket}" if bucket else "")
            # p50 of one call: the latency floor for one request (batch 1)
            p50 = statistics.median(calls_ms) if batch == 1 else None
            out.append(Result(name, None, rate, p50, cpu_ms=cpu_ms, notes={"threads": threads}))
            console.print(f"  {name}: {rate:.1f} sentences/s, {cpu_ms:.1f} ms·core/sentence")
    return out


# The pod's Ray env for services/embedder as shipped (service.yaml `serve.ingress`).
SHIPPED_ENV = load_service("embedder").serve.ray_env()
# Its bucket_size (serve.yaml user_config), which bare batched inference uses too.
SHIPPED_BUCKET = int(
    yaml.safe_load((REPO / "services/embedder/serve.yaml").read_text())["applications"][0][
        "deployments"
    ][0]["user_config"]["bucket_size"]
)


@dataclass
class ServeVariant:
    name: str
    replicas: int = 2
    threads: int = 1
    max_ongoing: int = 64
    bucket: int = SHIPPED_BUCKET
    max_batch: int = 32
    wait_s: float = 0.005
    version: str = "v1"
    env: dict[str, str] = field(default_factory=lambda: dict(SHIPPED_ENV))  # Ray + `serve run`
    opt_in: bool = False  # not in the default run: only with --only


# `serve.ingress: proxy`: Serve's Python HTTP proxy, each request an actor call to a replica.
PROXY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
# Ray 2.60's throughput-optimized bundle without direct ingress: proxy -> replica over gRPC, user
# code on the replica's own event loop. Measured twice (docs/performance.md): within noise.
THROUGHPUT_ENV = {
    **PROXY_ENV,
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_PROXY_USE_GRPC": "1",
}

# The replica runs user code on its own event loop, not a second one in another thread.
ONE_LOOP_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}


SERVE_VARIANTS = {
    v.name: v
    for v in (
        ServeVariant("serve"),  # services/embedder/serve.yaml and service.yaml as shipped
        ServeVariant("serve-v2", version="v2"),
        ServeVariant("serve-proxy", env=PROXY_ENV),
        ServeVariant("serve-v2-proxy", version="v2", env=PROXY_ENV),
        ServeVariant("serve-wait20", wait_s=0.02, opt_in=True),
        ServeVariant("serve-wait50", wait_s=0.05, opt_in=True),
        ServeVariant("serve-nobucket", bucket=0, opt_in=True),
        ServeVariant("serve-mor5", max_ongoing=5, opt_in=True),  # Serve's default max_ongoing
        ServeVariant("serve-1x2", replicas=1, threads=2, opt_in=True),
        ServeVariant("serve-throughput", env=THROUGHPUT_ENV, opt_in=True),
        ServeVariant("serve-one-loop", env={**SHIPPED_ENV, **ONE_LOOP_ENV}, opt_in=True),
        ServeVariant(
            "serve-v2-one-loop", version="v2", env={**SHIPPED_ENV, **ONE_LOOP_ENV}, opt_in=True
        ),
    )
}


def bench_serve(v: ServeVariant, duration_s: int, script: Path, workdir: Path) -> list[Result]:
    saved = dict(os.environ)
    # Ray's processes and `serve run` inherit it; metrics reported every 1 s (Ray's default is
    # 10 s), so the batch histogram read after each load level holds that level's batches.
    os.environ.update({**v.env, "RAY_metrics_report_interval_ms": str(METRICS_REPORT_MS)})
    try:
        return _bench_serve(v, duration_s, script)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _bench_serve(v: ServeVariant, duration_s: int, script: Path) -> list[Result]:
    ray = start_ray(num_cpus=2, attempts=5)
    try:
        (port,) = free_ports(1)
        app = app_from_serve_yaml(
            "embedder",
            name="embedder",
            route_prefix="/",
            args={"version": v.version, "num_threads": v.threads},
            deployment={
                "num_replicas": v.replicas,
                "max_ongoing_requests": v.max_ongoing,
                "ray_actor_options": {"num_cpus": v.threads},
                "user_config": {
                    "batching": {"max_batch_size": v.max_batch, "batch_wait_timeout_s": v.wait_s},
                    "bucket_size": v.bucket,
                },
            },
        )
        serve_run(ray.address, [app], port, ray.temp_dir, timeout_s=300)
        wait_ready(f"http://127.0.0.1:{port}/ready", 600)
        url = f"http://127.0.0.1:{port}/v1/embeddings"
        wrk(url, 8, 5, script)  # warm-up
        results = []
        for conc in (8, 32):
            before = batch_buckets(ray.metrics_port)
            r = measure(url, conc, duration_s, script, ray.pids())
            time.sleep(3 * METRICS_REPORT_MS / 1000)  # the last batches reach the exporter
            r.setup, r.notes = v.name, asdict(v)
            r.notes["mean_batch"] = batch_mean(before, batch_buckets(ray.metrics_port))
            results.append(r)
        per = memory_by_process(ray.pids())
        rss, pss = totals(per)
        for r in results:
            r.rss_mib, r.pss_mib = rss, pss
            r.notes["pss_mib_by_process"] = {n: round(p) for n, (_, p) in sorted(per.items())}
        return results
    finally:
        ray.stop()


def batch_buckets(metrics_port: int) -> dict[float, float]:
    """The batch-size histogram's cumulative bucket counts (`le` -> batches), summed over
    replicas."""
    from tests.services.promtext import samples

    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    per_bound: dict[float, float] = {}
    for s in samples(text, "ray_gantry_batch_size_bucket"):
        bound = float(s.labels["le"])
        per_bound[bound] = per_bound.get(bound, 0.0) + s.value
    return per_bound


def batch_mean(before: dict[float, float], after: dict[float, float]) -> float | None:
    """Mean requests per model call between two reads of `batch_buckets` (each bucket's upper
    bound: an upper estimate). Not `_sum / _count`: Ray 2.60 exports a `_sum` below its
    `_count` for this histogram (251 vs 280 batches in one run), which read as a mean below 1."""
    per_bound = {b: n - before.get(b, 0.0) for b, n in after.items()}
    bounds = sorted(b for b in per_bound if b != float("inf"))
    batches, below, requests_ = per_bound.get(float("inf"), 0.0), 0.0, 0.0
    for bound in bounds:
        requests_ += (per_bound[bound] - below) * bound
        below = per_bound[bound]
    return requests_ / batches if batches else None


def bench_sandbox(duration_s: int, script: Path) -> list[Result]:
    """The sandbox's front door as a user reaches it: `gantry sandbox up` with the shipped stack
    (Pulumi.sandbox.yaml, both services), then `<routes.embedder>/v1/embeddings` (the gateway,
    HAProxy -> the stable version's replicas). Its own state dir and free ports; stopped
    afterwards. c=1 for the latency goal; c=32 for throughput, once Serve's autoscaler has
    scaled the embedder out under that load."""
    from gantry.stack import load_stack_file
    from sandbox import lifecycle, procs
    from sandbox.state import Paths

    plan = lifecycle.Plan.from_config(load_stack_file(REPO / "Pulumi.sandbox.yaml"))
    with tempfile.TemporaryDirectory(prefix="gbs-", dir="/tmp") as tmp:
        paths = Paths(Path(tmp))
        state = lifecycle.up(plan, paths)
        try:
            url = f"{state.routes['embedder']}/v1/embeddings"
            wrk(url, 8, 5, script)  # warm-up
            results = []
            for conc in (1, 32):
                replicas = 1
                if conc > 1:  # steady state: Serve's autoscaler has scaled out under this load
                    replicas = scale_out(paths, url, conc, script, plan.specs["embedder"])
                # Now: the autoscaler's nodes and replicas started since count too.
                pids = {p.pid for p in procs.members(state.procs)}
                r = measure(url, conc, duration_s, script, pids)
                r.setup = "sandbox"
                r.notes = {"path": "gateway -> replica", "replicas": replicas}
                results.append(r)
            rss, pss = tree_memory({p.pid for p in procs.members(state.procs)})
            for r in results:
                r.rss_mib, r.pss_mib = rss, pss
            return results
        finally:
            lifecycle.down(paths)


def scale_out(paths: Any, url: str, conc: int, script: Path, spec: Any, limit_s: int = 90) -> int:
    """Load at `conc` until the stable embedder runs `max_replicas` (or `limit_s` passed);
    returns its running replicas."""
    from sandbox.lifecycle import status

    deadline = time.monotonic() + limit_s
    while True:
        apps = status(paths).get("applications") or {}
        deployments = (apps.get(f"embedder-{spec.version}") or {}).get("deployments") or {}
        running = sum(d["replicas"] for d in deployments.values())
        if running >= spec.autoscaling.max_replicas or time.monotonic() > deadline:
            return running
        wrk(url, conc, 5, script)


def bench_naive(workers: int, duration_s: int, script: Path) -> list[Result]:
    (port,) = free_ports(1)
    env = {**os.environ, **LOOPBACK_ENV, "NAIVE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.benchmarks.naive_embedder:app", "--host",
         "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/docs", 300)
        url = f"http://127.0.0.1:{port}/v1/embeddings"
        wrk(url, 8, 5, script)
        results = []
        for conc in (8, 32):
            r = measure(url, conc, duration_s, script, process_tree(proc.pid))
            r.setup, r.notes = f"naive-{workers}", {"workers": workers, "threads": 1}
            results.append(r)
        rss, pss = tree_memory(process_tree(proc.pid))
        for r in results:
            r.rss_mib, r.pss_mib = rss, pss
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---------------------------------------------------------------- report


def show(results: list[Result]) -> None:
    table = Table(title="services benchmark (req/s = sentences/s: one sentence per request)")
    cols = ("setup", "c", "req/s", "p50 ms", "p99 ms", "err", "CPU ms/req", "proxy ms/req")
    for col in (*cols, "RSS MiB", "PSS MiB", "batch"):
        table.add_column(col, justify="right" if col != "setup" else "left")
    for r in results:
        fmt = lambda x, p=0: "-" if x is None else f"{x:.{p}f}"  # noqa: E731
        table.add_row(
            r.setup, fmt(r.concurrency), fmt(r.rps, 1), fmt(r.p50_ms), fmt(r.p99_ms),
            str(r.errors), fmt(r.cpu_ms, 1), fmt(r.proxy_cpu_ms, 1), fmt(r.rss_mib), fmt(r.pss_mib),
            fmt(r.notes.get("mean_batch"), 1),
        )  # fmt: skip
    console.print(table)


def run_setup(setup: str, duration_s: int, script: Path, workdir: Path) -> list[Result]:
    if setup == "bare":
        return bench_bare(threads=psutil.cpu_count() or 2)
    if setup in SERVE_VARIANTS:
        return bench_serve(SERVE_VARIANTS[setup], duration_s, script, workdir)
    if setup.startswith("naive-"):
        return bench_naive(int(setup.split("-")[1]), duration_s, script)
    if setup == "sandbox":
        return bench_sandbox(duration_s, script)
    raise ValueError(f"unknown setup {setup!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Gantry services benchmark")
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--only",
        default="bare,"
        + ",".join(n for n, v in SERVE_VARIANTS.items() if not v.opt_in)
        + ",naive-1,naive-2,sandbox",
        help="comma-separated setups: bare, "
        + ", ".join(SERVE_VARIANTS)
        + ", naive-1, naive-2, sandbox (the sandbox's front door)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    if os.environ.get(IN_NETNS) != "1":
        # HAProxy ingress binds its stats and metrics ports on every interface: run everything
        # (Ray, HAProxy, wrk, the sandbox) in a network namespace of its own, as a pod would.
        if not netns.available():
            sys.exit("needs unshare (user namespaces): HAProxy ingress binds every interface")
        argv = netns.argv([sys.executable, *sys.argv])
        os.execvpe(argv[0], argv, {**os.environ, IN_NETNS: "1"})
    setups = args.only.split(",")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="gbench-") as tmp:
        script = lua_script(Path(tmp))
        for rep in range(args.repeat):
            for setup in setups:
                console.rule(f"[bold]{setup}[/] (run {rep + 1}/{args.repeat})")
                try:
                    batch = run_setup(setup, args.duration, script, Path(tmp))
                except Exception as exc:  # a failed setup (e.g. Ray start timeout) is reported
                    console.print(f"[red]{setup} failed: {exc!r:.300}")
                    batch = [Result(setup, None, 0.0, notes={"failed": repr(exc)[:300]})]
                for r in batch:
                    r.notes["run"] = rep + 1
                results.extend(batch)
                show(batch)
    show(results)
    out = REPO / ".gantry" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"services-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps([asdict(r) for r in results], indent=2))
    console.print(f"results: {path}")


if __name__ == "__main__":
    main()

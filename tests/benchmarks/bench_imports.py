"""Import cost of each Gantry package, and of `gantry --help`, in fresh interpreters.

Each figure is the median of `--runs` fresh processes (a warm page cache: the first run is
discarded). Also lists which engines (pulumi, ray, torch, locust) the import pulled in.

    python tests/benchmarks/bench_imports.py [--runs 5] [MODULE ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ("pulumi", "ray", "torch", "locust", "onnxruntime")
DEFAULT = [
    "gantry",
    "gantry.stack",
    "gantry.service",
    "gantry.canary",
    "gantry.cli",
    "infra",
    "infra.program",
    "sandbox",
    "sandbox.rollout",
    "loadtests.runner",
    "loadtests.observers",
    # The same roles before the core existed (skipped when absent):
    "infra.config",
    "infra.serving.spec",
    "infra.cli",
    "infra.sandbox.rollout",
]
_PROBE = """
import json, sys, time
t = time.perf_counter()
import {module}
dt = time.perf_counter() - t
print(json.dumps({{"s": dt, "engines": [e for e in {engines!r} if e in sys.modules]}}))
"""


def _exists(module: str) -> bool:
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
    finally:
        sys.path.pop(0)


def time_import(module: str, runs: int) -> tuple[float, list[str]]:
    times, engines = [], []
    for _ in range(runs + 1):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE.format(module=module, engines=ENGINES)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        row = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(row["s"])
        engines = row["engines"]
    return statistics.median(times[1:]), engines


def time_help(runs: int) -> float | None:
    gantry = shutil.which("gantry") or str(Path(sys.executable).parent / "gantry")
    if not os.path.exists(gantry):
        return None
    times = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        subprocess.run([gantry, "--help"], cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=DEFAULT)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"{'module':28} {'import s':>9}  engines loaded")
    for module in args.modules:
        if not _exists(module):
            continue
        seconds, engines = time_import(module, args.runs)
        print(f"{module:28} {seconds:9.3f}  {', '.join(engines) or '-'}")
    help_s = time_help(args.runs)
    if help_s is not None:
        print(f"{'gantry --help (wall)':28} {help_s:9.3f}")


if __name__ == "__main__":
    main()

"""Benchmark: `gantry render` with every Helm release rendered by real Helm (goal <= 5 s/stack).

Runs the CLI as a user does, in a fresh process per stack and run, into a temporary folder;
reports wall and CPU seconds (children included) and the median of RUNS runs. Run: `make bench`.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GANTRY = REPO / ".venv" / "bin" / "gantry"
GOAL_S = 5.0
RUNS = 3


def once(stack: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [str(GANTRY), "render", "--stack", stack, "--out", out],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    stacks = sys.argv[1:] or ["sandbox", "eks"]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    header = f"wall (median of {RUNS})"
    print(f"{'stack':8} {header:>20} {'CPU':>7}")
    worst = 0.0
    for stack in stacks:
        runs = [once(stack) for _ in range(RUNS)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        worst = max(worst, wall)
        print(f"{stack:8} {wall:>19.2f}s {cpu:>6.2f}s")
    verdict = "met" if worst <= GOAL_S else "NOT met"
    print(
        f"goal: gantry render <= {GOAL_S:.0f} s per stack, charts included: {verdict} "
        f"({worst:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

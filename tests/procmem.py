"""Memory of a set of processes, per process name: what the benchmarks and the pod run report."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import psutil


def memory_by_process(pids: Iterable[int]) -> dict[str, tuple[float, float]]:
    """{process name: (RSS, PSS) in MiB}, summed over processes of the same name; a Python or
    Ray CLI process is named by its script or module. PSS splits shared pages fairly between the
    processes that map them."""
    out: dict[str, tuple[float, float]] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            info, name = proc.memory_full_info(), proc.name()
            if name.startswith("python") or name in ("ray", "serve"):
                args = [a for a in proc.cmdline()[1:] if not a.startswith("-")]
                name = f"{name} {Path(args[0]).name if args else ''}".strip()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss, pss = out.get(name, (0.0, 0.0))
        out[name] = (rss + info.rss / 2**20, pss + info.pss / 2**20)
    return out


def totals(per_process: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over `memory_by_process`'s answer."""
    return sum(r for r, _ in per_process.values()), sum(p for _, p in per_process.values())

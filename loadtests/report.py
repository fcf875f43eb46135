"""A run's report: `summary.json`, the timeline PNG, and the one-screen verdict.

The run folder also holds Locust's own `locust.html` and `locust_*.csv`, the raw `load.jsonl`
and `platform.jsonl`, and the merged `timeline.jsonl` the expectations were evaluated on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from loadtests.expectations import Check, reference_points
from loadtests.timeline import Sample


class Summary(BaseModel):
    scenario: str
    service: str
    target: str
    observer: str
    passed: bool
    aborted: str | None = None  # why the run stopped early
    duration_s: float
    requests: int
    failures: int
    checks: list[Check]
    rollout_started_at_s: float | None = None
    rollout_exit: int | None = None  # `gantry rollout`: 0 promoted, 1 rolled back, 130 aborted
    fault_at_s: float | None = None
    fault: dict[str, Any] | None = None  # what the fault hit (`gantry sandbox fault`'s answer)
    files: dict[str, str] = {}


def write_summary(out: Path, summary: Summary) -> Path:
    path = out / "summary.json"
    path.write_text(summary.model_dump_json(indent=2) + "\n")
    return path


def _series(samples: list[Sample], attr: str) -> dict[str, list[float]]:
    """Per-key series of a dict-valued column (replicas, weights, nodes); gaps are NaN."""
    keys = sorted({k for s in samples for k in (getattr(s, attr) or {})})
    return {
        k: [
            float((getattr(s, attr) or {}).get(k, 0))
            if getattr(s, attr) is not None
            else float("nan")
            for s in samples
        ]
        for k in keys
    }


def _phase_changes(samples: list[Sample]) -> list[Sample]:
    """The samples where the rollout phase changed (for annotations)."""
    out, last = [], None
    for s in samples:
        if s.phase and s.phase != last:
            out.append(s)
            last = s.phase
    return out


@dataclass(frozen=True)
class JobSpan:
    """One stretch of a job in one state, in s since the load started."""

    start: float
    end: float
    state: str  # queued | running (the finished states end the last span)
    reason: str = ""


JOB_COLORS = {"queued": "lightgray", "running": "tab:green"}


def _plot_jobs(ax: Any, jobs: Mapping[str, list[JobSpan]]) -> None:
    """One bar per job: gray while queued, green while running; a red tick where preempted."""
    for row, spans in enumerate(jobs.values()):
        for span in spans:
            color = JOB_COLORS.get(span.state)
            if color:
                ax.broken_barh([(span.start, span.end - span.start)], (row - 0.3, 0.6), color=color)
            if span.reason.startswith("preempted"):
                ax.plot([span.start], [row], marker="x", color="tab:red", ms=9)
    ax.set_yticks(range(len(jobs)), list(jobs))
    ax.set_ylim(-0.7, len(jobs) - 0.3)
    ax.set_ylabel("jobs")
    ax.legend(
        handles=[
            Patch(color=JOB_COLORS["queued"], label="queued"),
            Patch(color=JOB_COLORS["running"], label="running"),
            Line2D([], [], marker="x", color="tab:red", ls="", label="preempted"),
        ],
        loc="upper right",
        fontsize=7,
        ncol=3,
    )


def _val(x: float | int | None) -> float:
    return float("nan") if x is None else float(x)


def plot_timeline(
    path: Path,
    samples: list[Sample],
    title: str,
    slo_p99_ms: float | None = None,
    rollout_at_s: float | None = None,
    fault: tuple[float, str] | None = None,
    jobs: Mapping[str, list[JobSpan]] | None = None,
) -> Path:
    """RPS, latency, replicas per version, traffic weights and nodes per pool over one time axis;
    with `jobs`, a last panel of each job's queued and running spans."""
    t = [s.t for s in samples]
    rows = 6 if jobs else 5
    fig, axes = plt.subplots(
        rows, 1, figsize=(10, 11 + 1.5 * (rows - 5)), sharex=True, constrained_layout=True
    )
    ax_rps, ax_lat, ax_rep, ax_w, ax_nodes = axes[:5]
    if jobs:
        _plot_jobs(axes[5], jobs)

    ax_rps.plot(t, [_val(s.rps) for s in samples], label="requests/s", color="tab:blue")
    ax_rps.plot(t, [_val(s.fail_rps) for s in samples], label="failed/s", color="tab:red")
    users = ax_rps.twinx()
    users.step(t, [_val(s.users) for s in samples], where="post", color="gray", ls="--", lw=1)
    users.set_ylabel("users (dashed)", color="gray")
    users.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_rps.set_ylabel("req/s")

    ax_lat.plot(t, [_val(s.p50_ms) for s in samples], label="p50")
    ax_lat.plot(t, [_val(s.p95_ms) for s in samples], label="p95")
    ax_lat.plot(t, [_val(s.p99_ms) for s in samples], label="p99")
    if slo_p99_ms:
        ax_lat.axhline(slo_p99_ms, color="tab:red", ls=":", label=f"p99 SLO {slo_p99_ms:g}")
    ax_lat.set_ylabel("latency (ms)")

    for key, ys in _series(samples, "replicas").items():
        ax_rep.step(t, ys, where="post", label=key)
    if any(s.desired is not None for s in samples):
        ax_rep.step(t, [_val(s.desired) for s in samples], where="post", ls=":", label="desired")
    ax_rep.set_ylabel("replicas")

    for key, ys in _series(samples, "weights").items():
        ax_w.step(t, ys, where="post", label=key)
    ax_w.set_ylabel("traffic (%)")
    ax_w.set_ylim(-5, 105)
    for s in _phase_changes(samples):
        ax_w.annotate(s.phase, (s.t, 50), fontsize=8, rotation=90, va="center", ha="right")

    for key, ys in _series(samples, "nodes").items():
        ax_nodes.step(t, ys, where="post", label=key)
    ax_nodes.set_ylabel("nodes")
    axes[-1].set_xlabel("time since load start (s)")

    for ax in (ax_rep, ax_nodes):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=-0.2)
    pts = reference_points(samples)
    first_load = next((s.t for s in samples if s.users), None)
    step_at = pts.rise if pts.rise != first_load else None  # a soak has no step
    for ax in axes:
        for at, label, color in (
            (step_at, "load step", "tab:orange"),
            (pts.end, "load end", "tab:purple"),
            (rollout_at_s, "rollout", "tab:green"),
            (fault[0] if fault else None, f"fault: {fault[1]}" if fault else "", "tab:red"),
        ):
            if at is not None:
                ax.axvline(at, color=color, ls="--", lw=0.8, label=label if ax is ax_rps else None)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=7, ncol=4)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(x: float | str | None) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def render_verdict(summary: Summary, out: Path, console: Console | None = None) -> None:
    """One screen: the verdict, each expectation with its measured value, where the files are."""
    console = console or Console()
    table = Table(show_edge=False, pad_edge=False)
    for col in ("expectation", "wanted", "measured", "", "detail"):
        table.add_column(col)
    for c in summary.checks:
        mark = "[green]PASS[/]" if c.passed else "[red]FAIL[/]"
        table.add_row(c.name, c.expected, _fmt(c.measured), mark, c.detail)
    head = "[bold green]PASSED[/]" if summary.passed else "[bold red]FAILED[/]"
    lines = [
        f"{head}  {summary.scenario} · {summary.service} @ {summary.target}",
        f"{summary.requests} requests, {summary.failures} failed, {summary.duration_s:.0f} s · "
        f"observer: {summary.observer}",
    ]
    if summary.rollout_started_at_s is not None:
        lines.append(
            f"rollout started at {summary.rollout_started_at_s:g} s, "
            f"exit {summary.rollout_exit} (log: rollout.log)"
        )
    if summary.fault_at_s is not None:
        lines.append(f"fault at {summary.fault_at_s:g} s: {summary.fault}")
    if summary.aborted:
        lines.append(f"[bold red]run stopped early:[/] {summary.aborted}")
    parts: list[RenderableType] = ["\n".join(lines)]
    if summary.checks:
        parts.append(table)
    parts.append(f"report: {out}")
    console.print(Panel(Group(*parts), title="gantry loadtest", expand=False))

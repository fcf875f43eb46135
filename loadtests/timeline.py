"""One timeline per run: load (from the Locust process) and platform state (from an observer),
joined per second on a shared time axis (`t`, s since the load started).

Both sides append JSON lines stamped with wall-clock time (`ts`, epoch s); `merge` buckets
them by second. Recorded timelines (`timeline.jsonl`) are what expectations are evaluated on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

M = TypeVar("M", bound=BaseModel)


class LoadPoint(BaseModel):
    """One second of load, written by the Locust process."""

    ts: float
    users: int
    requests: int  # completed in this second
    failures: int
    p50_ms: float | None = None  # over the sliding latency window
    p95_ms: float | None = None
    p99_ms: float | None = None


class PlatformPoint(BaseModel):
    """One observer sample."""

    model_config = ConfigDict(extra="ignore")

    ts: float
    replicas: dict[str, int] = {}  # ready replicas per version (or role) of the service
    desired: int | None = None  # what the autoscaler wants, when it says so
    weights: dict[str, float] = {}  # traffic share per version, percent
    phase: str | None = None  # rollout phase (Flagger's Canary phase or the sandbox driver's)
    nodes: dict[str, int] = {}  # ready nodes per pool
    error: str | None = None  # why this sample is empty (API unreachable...)


class Sample(BaseModel):
    """One second of the merged timeline."""

    t: int
    users: int | None = None
    rps: float | None = None
    fail_rps: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    replicas: dict[str, int] | None = None
    desired: int | None = None
    weights: dict[str, float] | None = None
    phase: str | None = None
    nodes: dict[str, int] | None = None

    @property
    def total_replicas(self) -> int | None:
        return None if self.replicas is None else sum(self.replicas.values())


def append(path: Path, point: BaseModel) -> None:
    with path.open("a") as f:
        f.write(point.model_dump_json() + "\n")


def read_points(path: Path, model: type[M]) -> list[M]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(model.model_validate_json(line))
        except ValueError:
            continue  # a line cut short by a killed writer
    return out


def merge(load: Iterable[LoadPoint], platform: Iterable[PlatformPoint], t0: float) -> list[Sample]:
    """Per-second samples from `t0`; the last point in a second wins, gaps stay None."""
    rows: dict[int, Sample] = {}

    def row(ts: float) -> Sample | None:
        t = math.floor(ts - t0)
        if t < 0:
            return None
        return rows.setdefault(t, Sample(t=t))

    for p in load:
        if (s := row(p.ts)) is not None:
            s.users, s.rps, s.fail_rps = p.users, float(p.requests), float(p.failures)
            s.p50_ms, s.p95_ms, s.p99_ms = p.p50_ms, p.p95_ms, p.p99_ms
    for q in platform:
        if q.error is None and (s := row(q.ts)) is not None:
            s.replicas, s.desired, s.weights = dict(q.replicas), q.desired, dict(q.weights)
            s.phase, s.nodes = q.phase, dict(q.nodes)
    if not rows:
        return []
    return [rows.get(t, Sample(t=t)) for t in range(max(rows) + 1)]


def write_timeline(path: Path, samples: list[Sample]) -> None:
    path.write_text("".join(s.model_dump_json() + "\n" for s in samples))


def read_timeline(path: Path) -> list[Sample]:
    return [Sample.model_validate(json.loads(line)) for line in path.read_text().splitlines()]

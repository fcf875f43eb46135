"""Recorded-style timelines for the expectation and report tests."""

from loadtests.timeline import Sample


def step_run(
    *,
    scale_out_at: int | None = 18,
    scale_in_at: int | None = 100,
    latency_spike_until: int = 25,
    desired_at: int | None = 12,
    phases: dict[int, str] | None = None,
    length: int = 120,
) -> list[Sample]:
    """1 user until t=10, 16 users until t=60, then no load; replicas 1 -> 2 -> 1."""
    out = []
    for t in range(length):
        users = 1 if t < 10 else 16 if t < 60 else None
        replicas = 2 if scale_out_at is not None and t >= scale_out_at else 1
        if scale_in_at is not None and t >= scale_in_at:
            replicas = 1
        p99 = None if users is None else 3500.0 if 10 <= t < latency_spike_until else 600.0
        desired = replicas
        if desired_at is not None and users == 16 and t >= desired_at:
            desired = 2
        out.append(
            Sample(
                t=t,
                users=users,
                rps=None if users is None else users * 2.0,
                fail_rps=None if users is None else 0.0,
                p50_ms=None if p99 is None else p99 / 3,
                p95_ms=None if p99 is None else p99 / 2,
                p99_ms=p99,
                desired=desired,
                replicas={"v1": replicas},
                weights={"v1": 100.0},
                phase=(phases or {}).get(t),
                nodes={"cpu": 1, "gpu": replicas},
            )
        )
    return out


def fault_run(*, replaced_at: int | None = 30, slow_until: int = 28) -> list[Sample]:
    """4 users for 70 s; a fault at t=20 takes a replica and its gpu node, back at `replaced_at`;
    p99 over the SLO from the fault until `slow_until`."""
    out = []
    for t in range(80):
        users = 4 if t < 70 else None
        lost = t >= 20 and (replaced_at is None or t < replaced_at)
        p99 = None if users is None else 3500.0 if 20 <= t < slow_until else 600.0
        out.append(
            Sample(
                t=t,
                users=users,
                p99_ms=p99,
                replicas={"v1": 1 if lost else 2},
                nodes={"cpu": 1, "gpu": 1 if lost else 2},
            )
        )
    return out


def plateau_run(
    *segments: tuple[int, int, int, float, float, float], fail_rps: float = 0.0
) -> list[Sample]:
    """Back-to-back plateaus with exact numbers, for sizing: each segment is (seconds, users,
    replicas, requests/s, p50 ms, p99 ms); then 10 s without load."""
    out: list[Sample] = []
    for seconds, users, replicas, rps, p50, p99 in segments:
        for _ in range(seconds):
            out.append(
                Sample(
                    t=len(out),
                    users=users,
                    rps=rps,
                    fail_rps=fail_rps,
                    p50_ms=p50,
                    p95_ms=p99,
                    p99_ms=p99,
                    replicas={"v1": replicas},
                    nodes={"cpu": 1, "gpu": replicas},
                )
            )
    for _ in range(10):
        out.append(Sample(t=len(out), replicas=out[-1].replicas))
    return out

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

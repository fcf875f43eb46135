"""One private Ray for the job tests (loopback only, its own temp dir, stopped by PID, with the
sandbox's pool resources and one logical GPU), and the times they measure, printed at the end
of the session's summary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services.raylocal import LocalRay, start_ray

TIMINGS: dict[str, float] = {}  # "what: measure" -> seconds


@pytest.fixture(scope="session")
def job_ray() -> Iterator[LocalRay]:
    # 4 logical CPUs on this 2-core machine: 2 digits workers x 0.5 + a Ray Data read task +
    # one embeddings actor (1 CPU) fit at once.
    ray = start_ray(num_cpus=4, num_gpus=1, resources={"pool:cpu": 1000, "pool:gpu": 1000})
    try:
        yield ray
    finally:
        ray.stop()


@pytest.fixture
def timings() -> dict[str, float]:
    return TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "jobs: measured times")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what}: {seconds:.1f} s")

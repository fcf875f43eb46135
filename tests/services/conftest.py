"""One private Ray + Serve per test session, with both services deployed once (see stack.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.services.raylocal import free_ports, start_ray
from tests.services.servedeploy import serve_run, wait_ready
from tests.services.stack import ServeStack, session_apps

READY_TIMEOUT_S = 420  # a loaded 2-core machine takes minutes to load four models


@pytest.fixture(scope="session")
def stack() -> Iterator[ServeStack]:
    ray = start_ray(num_cpus=8)  # logical CPUs: 6 replicas + router must all fit
    try:
        (port,) = free_ports(1)
        config = serve_run(ray.address, session_apps(), port, ray.temp_dir)
        stack = ServeStack(ray, port, config)
        deadline = time.monotonic() + READY_TIMEOUT_S
        for path in (
            "/embedder/ready",
            "/classifier/ready",
            "/canary/embedder/v2/ready",
            "/canary/classifier/v2/ready",
        ):
            wait_ready(stack.url(path), max(deadline - time.monotonic(), 1))
        yield stack
    finally:
        ray.stop()

"""The test Ray listens on loopback only: every TCP listener of its process tree (ss -ltnp),
with ONE exception Ray Serve 2.60 hard-codes: each replica's inter-deployment gRPC server binds
`[::]:0` (ray/serve/_private/replica.py, `_on_initialized`), with no option to change it."""

import pytest

from tests.services.stack import ServeStack

pytestmark = pytest.mark.e2e  # real local Ray + Serve (session fixture: conftest.py)

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def test_every_ray_listener_is_on_loopback(stack: ServeStack) -> None:
    listeners = stack.ray.listeners()
    ports = {port for _, port, _ in listeners}
    assert {stack.http_port, stack.ray.metrics_port, stack.ray.gcs_port} <= ports
    exposed = [(h, p, name) for h, p, name in listeners if h not in LOOPBACK]
    replica_grpc = [x for x in exposed if x[2].startswith("ray::ServeRepli")]
    assert exposed == replica_grpc, f"Ray listens beyond loopback: {exposed}"
    # At most one per replica: embedder, classifier; in /canary: embedder-v2, 2 classifiers.
    assert len(replica_grpc) <= 5, replica_grpc

"""Keep Serve replicas' inter-deployment gRPC server on loopback (a Ray worker setup hook).

Ray Serve 2.60 starts a gRPC server in every replica bound to `[::]:0` (all interfaces), with no
setting to change it (ray-project/ray#64544). The sandbox promises loopback-only listeners, so
each sandbox application's `runtime_env.worker_process_setup_hook` points here: the hook runs in
every worker before any replica starts and rebinds that server to 127.0.0.1. Serve only uses it
when gRPC transport is enabled (`RAY_SERVE_USE_GRPC_BY_DEFAULT`), which the sandbox does not do,
and the address it advertises is the node IP (127.0.0.1) either way.
"""

from __future__ import annotations

import logging
from typing import Any

HOOK = "sandbox.loopback.bind_grpc_to_loopback"
logger = logging.getLogger("ray.serve")


def bind_grpc_to_loopback() -> None:
    try:
        from ray.serve._private import replica
    except ImportError:  # not a Serve worker environment
        return
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "_gantry_loopback", False):
        if original is None:
            logger.warning("gantry: Ray Serve changed; replica gRPC may listen beyond loopback")
        return

    def add_port(server: Any, address: str) -> int:
        if address.startswith("[::]:") or address.startswith("0.0.0.0:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return int(original(server, address))

    add_port._gantry_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port

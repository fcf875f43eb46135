"""Loopback ports: pick free ones, or check that a configured one is free."""

from __future__ import annotations

import socket

from sandbox.errors import SandboxError

LOOPBACK = "127.0.0.1"


class PortInUse(Exception):
    def __init__(self, name: str, port: int) -> None:
        super().__init__(f"port {port} ({name}) is already in use on {LOOPBACK}")
        self.name, self.port = name, port


def is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def allocate(wanted: dict[str, int]) -> dict[str, int]:
    """A port per name: the wanted one (checked free) or, for 0, a free one the OS picks."""
    out: dict[str, int] = {}
    held: list[socket.socket] = []
    try:
        for name, port in wanted.items():
            if port:
                if not is_free(port):
                    raise PortInUse(name, port)
                out[name] = port
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            held.append(s)  # hold it so the next name gets a different port
            out[name] = s.getsockname()[1]
    finally:
        for s in held:
            s.close()
    return out


def free_range(count: int, low: int, high: int) -> int:
    """The first port of `count` consecutive free ports within [low, high)."""
    first = low
    while first + count <= high:
        taken = next((p for p in range(first, first + count) if not is_free(p)), None)
        if taken is None:
            return first
        first = taken + 1
    raise SandboxError(
        f"no {count} consecutive free ports in {low}-{high - 1} on {LOOPBACK} (Serve's replicas)",
        "stop what holds them (another sandbox?)",
    )

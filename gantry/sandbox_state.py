"""A running sandbox as other tools see it: its `state.json` and how its Serve apps are named.

The sandbox (sandbox/) writes this; observers (the load tests, `gantry sandbox status`) read it
without importing the sandbox. Field by field, see sandbox/__init__.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

DEFAULT_STATE_DIR = Path(".gantry/sandbox")
STATE_FILE = "state.json"


class Proc(BaseModel):
    """A process Gantry started; `down` stops it and every process of its session (`sid`)."""

    name: str
    pid: int
    create_time: float  # psutil's create_time: guards against a recycled PID


class SandboxState(BaseModel):
    """The contents of `state.json`."""

    state_dir: str
    ray_temp_dir: str
    gcs_address: str
    ports: dict[str, int]  # gcs, dashboard, serve, prometheus, ray_client, metrics, agent, ...
    urls: dict[str, str]  # serve, dashboard, prometheus, serve_api, nodes_api
    routes: dict[str, str]  # service -> URL prefix of its router
    procs: list[Proc]
    started_at: float
    ready: bool = False


def read_state(state_dir: Path) -> SandboxState | None:
    """The state of the sandbox whose state directory is `state_dir`; None if it never ran."""
    try:
        return SandboxState.model_validate_json((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None


def app_name(service: str, version: str) -> str:
    """The Serve application that runs one version of a service (e.g. `embedder-v2`)."""
    return f"{service}-{version}"

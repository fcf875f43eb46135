"""Where the sandbox keeps its state, and the state file other tools read.

Everything lives under one state directory (default `.gantry/sandbox/`): `state.json` (ports,
URLs, the PIDs Gantry started), `routing.json` (which versions serve, canary weights), the Ray
autoscaling config, the gateway's and Prometheus' config, Prometheus' data, logs and the rollout
event log. Ray's temp dir must stay short (its unix socket paths are limited to ~107
characters), so when `<state>/ray` would be too long it lives in `/tmp/gantry-<hash>` with a
symlink at `<state>/ray`; `state.json` records the real path.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gantry.sandbox_state import ROUTING_FILE, STATE_FILE, SandboxState, read_state
from sandbox.gateway import Gateway

# Longest Ray temp dir we use in place: Ray appends `session_<timestamp>_<pid>/sockets/raylet`
# (about 60 characters) and unix socket paths are limited to 107.
_MAX_RAY_DIR = 45


class Paths:
    """The files of one sandbox state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def autoscaler_config(self) -> Path:
        return self.root / "autoscaler.yaml"

    @property
    def serve_config(self) -> Path:
        return self.root / "serve-config.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def prometheus_dir(self) -> Path:
        return self.root / "prometheus"

    @property
    def prometheus_config(self) -> Path:
        return self.prometheus_dir / "prometheus.yml"

    @property
    def routing(self) -> Path:
        return self.root / ROUTING_FILE

    @property
    def rollouts(self) -> Path:
        return self.root / "rollouts"

    @property
    def gateway(self) -> Gateway:
        # Its admin socket sits in the short temp dir: unix socket paths are limited to ~107.
        return Gateway(self.root / "gateway", self.ray_temp_dir() / "gateway.sock")

    @property
    def lock(self) -> Path:
        return self.root / "up.lock"

    @property
    def routing_lock(self) -> Path:
        return self.root / "routing.lock"

    def ray_temp_dir(self) -> Path:
        """Ray's temp dir: `<state>/ray`, or a short /tmp dir linked from there."""
        inside = self.root / "ray"
        if len(str(inside)) <= _MAX_RAY_DIR:
            return inside
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:10]
        short = Path(f"/tmp/gantry-{digest}")
        short.mkdir(mode=0o700, exist_ok=True)
        if inside.is_symlink() or inside.exists():
            if inside.is_symlink() and Path(os.readlink(inside)) == short:
                return short
            if inside.is_symlink():
                inside.unlink()
        if not inside.exists():
            inside.symlink_to(short)
        return short

    def read_state(self) -> SandboxState | None:
        return read_state(self.root)

    def write_state(self, state: SandboxState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.model_dump(), indent=2) + "\n")
        tmp.replace(self.state_file)

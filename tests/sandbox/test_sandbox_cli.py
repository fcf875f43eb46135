"""`gantry sandbox up` refuses what it cannot do with one clear line, exit 2, no traceback, and
starts nothing."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from sandbox_helpers import FAST_SANDBOX, gantry, write_stack


def _no_leftovers(state_dir: Path) -> None:
    assert not (state_dir / "state.json").exists()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        stack = write_stack(
            tmp_path / "Pulumi.t.yaml", {}, {**FAST_SANDBOX, "ports": {"serve": port}}
        )
        r = gantry("sandbox", "up", "--stack-file", str(stack), "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2
    assert f"port {port} (serve) is already in use" in r.stderr
    assert "gantry:sandbox.ports.serve" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    _no_leftovers(tmp_path / "s")


def test_missing_prometheus_names_the_install_line(tmp_path: Path) -> None:
    stack = write_stack(tmp_path / "Pulumi.t.yaml", {}, FAST_SANDBOX)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # the venv only
    r = gantry(
        "sandbox", "up", "--stack-file", str(stack), "--state-dir", str(tmp_path / "s"), env=env
    )
    assert r.returncode == 2
    assert "`prometheus` is not installed" in r.stderr
    assert "apt-get install -y prometheus" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    _no_leftovers(tmp_path / "s")


def test_bad_sandbox_config_names_the_key(tmp_path: Path) -> None:
    stack = write_stack(tmp_path / "Pulumi.t.yaml", {}, {"idle_timeout_s": -1})
    r = gantry("sandbox", "up", "--stack-file", str(stack), "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2
    assert "gantry:sandbox.idle_timeout_s" in r.stderr
    assert "Traceback" not in r.stderr


def test_status_and_rollout_without_a_sandbox(tmp_path: Path) -> None:
    r = gantry("sandbox", "status", "--json", "--state-dir", str(tmp_path))
    assert r.returncode == 0 and '"running": false' in r.stdout
    r = gantry("rollout", "embedder", "--to", "v2", "--state-dir", str(tmp_path))
    assert r.returncode == 2 and "not running" in r.stderr and "gantry sandbox up" in r.stderr
    r = gantry("sandbox", "down", "--state-dir", str(tmp_path))
    assert r.returncode == 0 and "not running" in r.stdout

"""`gantry sandbox up` refuses what it cannot do with one clear line, exit 2, no traceback, and
starts nothing; `status` says what is wrong with a broken sandbox in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
from sandbox_helpers import FAST_SANDBOX, gantry, write_stack

from gantry.sandbox_state import Proc, SandboxState
from sandbox import procs
from sandbox.state import Paths


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


def _state(root: Path, procs_: list[Proc]) -> None:
    urls = {k: "http://127.0.0.1:9" for k in ("serve", "dashboard", "prometheus", "serve_api",
                                               "nodes_api")}  # fmt: skip
    state = SandboxState(state_dir=str(root), ray_temp_dir=str(root / "ray"), gcs_address="x",
                         ports={"prometheus": 9}, urls=urls, routes={}, procs=procs_,
                         started_at=0, ready=True)  # fmt: skip
    Paths(root).write_state(state)


def _orphan_session(name: str) -> Proc:
    """What a dead head leaves: a session of processes (a shell and its two children) that are
    not this test's children, as a sandbox's are not the shell's that ran `up`."""
    launch = "sh -c 'sleep 120 & sleep 120' >/dev/null 2>&1 & echo $!"
    out = subprocess.run(["setsid", "sh", "-c", launch], capture_output=True, text=True, check=True)
    pid = int(out.stdout)
    return Proc(name=name, pid=pid, create_time=psutil.Process(pid).create_time())


def test_a_broken_sandbox_is_one_line_in_status_and_down_clears_it(tmp_path: Path) -> None:
    gone = procs.start("ray-head", ["true"], {}, tmp_path / "head.log")  # kill -9'd: exited
    procs.wait_exit(gone, 10)
    left = _orphan_session("prometheus")
    _state(tmp_path, [gone, left])
    r = gantry("sandbox", "status", "--state-dir", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1, r.stderr  # one line: what is wrong, what recovers it
    assert f"ray-head (pid {gone.pid}) exited" in r.stderr and "gantry sandbox up" in r.stderr
    r = gantry("sandbox", "status", "--json", "--state-dir", str(tmp_path))
    assert json.loads(r.stdout)["problem"] == f"ray-head (pid {gone.pid}) exited"
    assert len(procs.members([gone, left])) == 3  # the shell and both sleeps
    r = gantry("sandbox", "down", "--state-dir", str(tmp_path))
    assert r.returncode == 0 and procs.members([gone, left]) == []
    _no_leftovers(tmp_path)


def test_a_stale_state_file_says_so(tmp_path: Path) -> None:
    gone = procs.start("ray-head", ["true"], {}, tmp_path / "head.log")
    procs.wait_exit(gone, 10)
    _state(tmp_path, [gone])  # a reboot: nothing recorded runs
    r = gantry("sandbox", "status", "--state-dir", str(tmp_path))
    assert r.returncode == 1 and "every process has exited" in r.stderr

"""`gantry` exit codes and messages when tools are missing or the config is bad.

Absence is real: each command runs as a subprocess with a PATH holding only what the test puts
there, a fresh HOME (no ~/.pulumi), and a proxy that refuses connections (no CLI download).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GANTRY = Path(sys.executable).parent / "gantry"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A Gantry project (Pulumi.yaml, both stacks, platform/ and services/) in tmp, so state
    never lands in the repo."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.sandbox.yaml", "Pulumi.eks.yaml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("platform", "services"):
        (root / folder).symlink_to(REPO / folder)
    return root


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


def fake_tool(bin_dir: Path, name: str, exit_code: int = 0) -> None:
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    tool.chmod(0o755)


def gantry(*args: str, cwd: Path, path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(path),
        "HOME": str(home),
        # Any download attempt fails at once instead of waiting on the network.
        "https_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "COLUMNS": "200",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    return subprocess.run(
        [str(GANTRY), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return " ".join(result.stderr.split())  # rich may wrap; compare words


def test_up_on_kind_stack_without_docker_points_at_the_embedded_sandbox(
    project: Path, bin_dir: Path, tmp_path: Path
) -> None:
    err = assert_clean_failure(gantry("up", cwd=project, path=bin_dir, home=tmp_path))
    assert "`docker` is not installed" in err
    assert "make sandbox" in err


def test_docker_daemon_down_is_reported(project: Path, bin_dir: Path, tmp_path: Path) -> None:
    fake_tool(bin_dir, "docker", exit_code=1)  # `docker info` fails
    err = assert_clean_failure(gantry("destroy", cwd=project, path=bin_dir, home=tmp_path))
    assert "daemon is not reachable" in err and "make sandbox" in err


def test_up_without_kind_says_how_to_install_it(
    project: Path, bin_dir: Path, tmp_path: Path
) -> None:
    fake_tool(bin_dir, "docker")
    err = assert_clean_failure(
        gantry("up", "--stack", "sandbox", cwd=project, path=bin_dir, home=tmp_path)
    )
    assert "`kind` is not installed" in err
    assert "kind.sigs.k8s.io" in err and "make sandbox" in err


def test_missing_pulumi_cli_that_cannot_be_downloaded_exits_2_with_instructions(
    project: Path, bin_dir: Path, tmp_path: Path
) -> None:
    # preview needs no Docker; the Pulumi CLI is absent and the download is refused.
    err = assert_clean_failure(gantry("preview", cwd=project, path=bin_dir, home=tmp_path))
    assert "Pulumi CLI is not installed and could not be downloaded" in err
    assert "get.pulumi.com" in err
    assert (project / ".gantry" / "pulumi").is_dir()  # the local file backend lives in the project


def test_non_sandbox_stack_needs_a_passphrase(project: Path, bin_dir: Path, tmp_path: Path) -> None:
    err = assert_clean_failure(
        gantry("preview", "--stack", "eks", cwd=project, path=bin_dir, home=tmp_path)
    )
    assert "PULUMI_CONFIG_PASSPHRASE" in err


def test_bad_stack_config_exits_2_with_the_one_line_message(
    project: Path, bin_dir: Path, tmp_path: Path
) -> None:
    bad = (project / "Pulumi.sandbox.yaml").read_text().replace("max_size: 2", "max_size: 0", 1)
    (project / "Pulumi.bad.yaml").write_text(bad)
    for command in ("render", "up"):
        result = gantry(command, "--stack", "bad", cwd=project, path=bin_dir, home=tmp_path)
        assert_clean_failure(result)
        lines = result.stderr.strip().splitlines()
        assert lines == [
            "error: gantry:pools[0].max_size: Input should be greater than or equal to 1"
        ]


def test_unknown_stack_exits_2(project: Path, bin_dir: Path, tmp_path: Path) -> None:
    err = assert_clean_failure(
        gantry("render", "--stack", "nope", cwd=project, path=bin_dir, home=tmp_path)
    )
    assert "Pulumi.nope.yaml does not exist" in err

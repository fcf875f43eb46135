"""One project root: every path a command reads comes from the checkout it runs in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gantry import project

REPO = Path(__file__).resolve().parents[2]
GANTRY = Path(sys.executable).parent / "gantry"


def test_root_is_the_nearest_folder_with_pulumi_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: gantry\n")
    inner = tmp_path / "services" / "svc"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    assert project.root() == tmp_path
    assert project.stack_file("sandbox") == tmp_path / "Pulumi.sandbox.yaml"
    assert project.platform_dir() == tmp_path / "platform"
    assert project.services_dir() == tmp_path / "services"
    assert project.shown(inner / "service.yaml") == "services/svc/service.yaml"


def test_outside_a_checkout_the_installed_one_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert project.root() == REPO


@pytest.fixture
def second_checkout(tmp_path: Path) -> Path:
    """A second Gantry checkout: its own stack files and platform/ (with a teams.yaml broken in
    a way the repo's is not), the repo's services/."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.sandbox.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "platform", root / "platform")
    (root / "services").symlink_to(REPO / "services")
    teams = root / "platform" / "teams.yaml"
    teams.write_text(
        teams.read_text().replace(
            "  - name: ml-research\n", "  - name: ml-research\n    only_in_the_second_checkout: 1\n"
        )
    )
    assert "only_in_the_second_checkout" in teams.read_text()
    return root


def test_a_second_checkout_reads_its_own_files(second_checkout: Path, tmp_path: Path) -> None:
    env = {
        "PATH": str(tmp_path / "no-tools"),  # render needs no external tool before the stack
        "HOME": str(tmp_path),
        "COLUMNS": "200",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    out = tmp_path / "out"
    result = subprocess.run(
        [str(GANTRY), "render", "--stack", "sandbox", "--out", str(out)],
        cwd=second_checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())  # rich may wrap; compare words
    assert "Traceback" not in message
    assert f"{second_checkout / 'platform' / 'teams.yaml'}: " in message
    assert "ml-research).only_in_the_second_checkout: unknown key" in message
    assert str(REPO) not in message
    assert not out.exists()

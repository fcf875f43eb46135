"""`gantry render`: every object as YAML by layer, releases.yaml and index.json, every job's
RayJob, offline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gantry.cli import app
from gantry.jobs import job_names
from infra.helm.archives import missing_charts
from infra.render import ResourceIndex, write_render

REPO = Path(__file__).resolve().parents[2]
Program = Callable[[str], ResourceIndex]


def test_write_render_writes_one_file_per_object_grouped_by_layer(
    program: Program, tmp_path: Path
) -> None:
    index = program("eks")
    counts = write_render(index, tmp_path)
    files = sorted(tmp_path.glob("*/*.yaml"))
    assert counts["objects"] == len(index.k8s_objects()) == len(files)
    # The cluster layer's own object (the gp3 StorageClass) lands in cluster/.
    sc = yaml.safe_load((tmp_path / "cluster" / "storageclass-gp3.yaml").read_text())
    assert sc["kind"] == "StorageClass" and sc["apiVersion"] == "storage.k8s.io/v1"
    for f in files:
        doc = yaml.safe_load(f.read_text())
        assert {"apiVersion", "kind", "metadata"} <= set(doc), f
        assert f.parent.name == next(r.layer for r in index.k8s_objects() if r.manifest() == doc), f


def test_index_json_lists_every_resource_with_parent_and_inputs(
    program: Program, tmp_path: Path
) -> None:
    index = program("sandbox")
    write_render(index, tmp_path)
    rows = json.loads((tmp_path / "index.json").read_text())
    assert len(rows) == len(index)
    by_name = {(r["type"], r["name"]): r for r in rows}
    cmd = by_name[("command:local:Command", "gantry-sandbox-kind")]
    assert cmd["parent"] == "gantry-sandbox" and cmd["layer"] == "cluster"
    assert "kind create cluster" in cmd["inputs"]["create"]
    assert by_name[("gantry:cluster:KindCluster", "gantry-sandbox")]["parent"] is None


def test_releases_yaml_has_chart_version_repo_values(program: Program, tmp_path: Path) -> None:
    index = program("sandbox")
    write_render(index, tmp_path)
    releases = yaml.safe_load((tmp_path / "releases.yaml").read_text())
    assert len(releases) == len(index.helm_releases())
    for rel in releases:
        assert {"name", "namespace", "chart", "version", "repo", "layer", "values"} <= set(rel)


def test_gantry_render_cli_runs_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No pulumi, kind or docker on PATH: render needs none of them.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(REPO)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["render", "--stack", "sandbox", "-o", str(out)])
    if missing_charts():  # a fork without the archives: one line saying how to get them
        assert result.exit_code == 2 and "make charts" in result.output
        return
    assert result.exit_code == 0, result.output
    assert "Rendered stack sandbox" in " ".join(result.output.split())
    assert (out / "index.json").is_file() and (out / "releases.yaml").is_file()
    rows = json.loads((out / "index.json").read_text())
    assert any(r["type"] == "gantry:cluster:KindCluster" for r in rows)
    # Every job's RayJob, as a team would submit it (never applied by `gantry up`).
    for name in job_names():
        assert yaml.safe_load((out / "jobs" / f"{name}.yaml").read_text())["kind"] == "RayJob"

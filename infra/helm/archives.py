"""Where the pinned chart archives are, and the check that they are the pinned ones.

Searched in order: the folders in `GANTRY_CHARTS` (os.pathsep-separated), else
`../shared/charts` (beside the checkout; CI has it) and `.gantry/charts` (`make charts`).
An archive counts only if its Chart.yaml says the chart name and version the pin says.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from helm_python import Chart as HelmChart

from gantry import project
from gantry.errors import PrerequisiteError
from infra.addons.charts import CHARTS, Chart

CHARTS_ENV = "GANTRY_CHARTS"
HOW_TO_GET = "run `make charts` (pulls the pinned charts into .gantry/charts) or set GANTRY_CHARTS"


class ChartsUnavailable(PrerequisiteError):
    """A pinned chart archive is not on this machine; the message says how to get it."""


def default_chart_dirs() -> list[Path]:
    """`../shared/charts` beside the project (CI's), then `.gantry/charts` (`make charts`)."""
    root = project.root()
    return [root.parent / "shared" / "charts", root / ".gantry" / "charts"]


def chart_dirs() -> list[Path]:
    env = os.environ.get(CHARTS_ENV)
    dirs = [Path(p) for p in env.split(os.pathsep) if p] if env else default_chart_dirs()
    return [d for d in dirs if d.is_dir()]


def archive_name(chart: Chart) -> str:
    """`<name>-<version>.tgz`, as `helm pull` saves it (an OCI reference's last segment)."""
    return f"{chart.name}-{chart.version}.tgz"


def find_archive(chart: Chart) -> Path:
    for folder in chart_dirs():
        path = folder / archive_name(chart)
        if path.is_file():
            return path
    searched = ", ".join(str(d) for d in chart_dirs()) or "no chart folder exists"
    raise ChartsUnavailable(
        f"chart {chart.name} {chart.version} not found ({searched}); {HOW_TO_GET}"
    )


@cache
def load(chart: Chart) -> HelmChart:
    """The pinned chart, loaded by Helm (cached: archives are immutable)."""
    path = find_archive(chart)
    loaded = HelmChart.load_archive(path.read_bytes())
    meta = loaded.metadata
    if (meta.get("name"), meta.get("version")) != (chart.name, chart.version):
        raise ChartsUnavailable(
            f"{path} holds {meta.get('name')} {meta.get('version')}, not the pinned "
            f"{chart.name} {chart.version}; {HOW_TO_GET}"
        )
    return loaded


def missing_charts() -> list[str]:
    """One line per pinned chart that cannot be loaded (empty when all are here)."""
    problems = []
    for chart in sorted(set(CHARTS.values()), key=lambda c: c.name):
        try:
            find_archive(chart)  # not cached: the folders may have changed
            load(chart)
        except ChartsUnavailable as err:
            problems.append(str(err))
    return problems

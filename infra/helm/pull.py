"""`make charts`: pull exactly the pinned charts from their official repositories, verified.

Each archive lands in `.gantry/charts/<name>-<version>.tgz` (where the offline checks look) only
after two checks: its Chart.yaml names the pinned chart and version, and, for an HTTP repository,
its sha256 is the digest the repository's index.yaml publishes for that version (an OCI registry
is content-addressed: the client verifies the digest it pulls by).
"""

from __future__ import annotations

import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python
import yaml

from gantry.errors import GantryError
from infra.addons.charts import CHARTS, Chart
from infra.helm.archives import archive_name, default_chart_dirs


class PullError(GantryError):
    """A chart could not be fetched, or what came is not the pinned chart."""


def repo_digest(repo: str, chart: Chart, fetch: Callable[[str], bytes]) -> str:
    """The sha256 the repository's index publishes for the pinned version."""
    index = yaml.safe_load(fetch(f"{repo.rstrip('/')}/index.yaml"))
    for entry in (index.get("entries") or {}).get(chart.name, []):
        if str(entry.get("version")) == chart.version:
            return str(entry["digest"])
    raise PullError(f"{repo} lists no {chart.name} {chart.version}")


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
        return data


def pull_one(
    chart: Chart,
    dest: Path,
    pull: Callable[..., Any] = helm_python.pull,
    fetch: Callable[[str], bytes] = _fetch,
) -> Path:
    target = dest / archive_name(chart)
    with tempfile.TemporaryDirectory() as tmp:
        if chart.repo:
            pull(chart.chart, repo_url=chart.repo, version=chart.version, destination=tmp)
        else:
            pull(chart.chart, version=chart.version, destination=tmp)
        got = Path(tmp) / archive_name(chart)
        if not got.is_file():
            raise PullError(f"{chart.source}: no {archive_name(chart)} came back")
        meta = helm_python.Chart.load_archive(got.read_bytes()).metadata
        if (meta.get("name"), meta.get("version")) != (chart.name, chart.version):
            raise PullError(f"{chart.source}: got {meta.get('name')} {meta.get('version')}")
        if chart.repo:
            want = repo_digest(chart.repo, chart, fetch)
            digest = helm_python.digest(got).removeprefix("sha256:")
            if digest != want.removeprefix("sha256:"):
                raise PullError(f"{chart.source}: sha256 {digest}, the index says {want}")
        dest.mkdir(parents=True, exist_ok=True)
        target.write_bytes(got.read_bytes())
    return target


def main() -> int:
    failed = 0
    for chart in sorted(set(CHARTS.values()), key=lambda c: c.name):
        try:
            path = pull_one(chart, default_chart_dirs()[-1])
            print(f"ok   {chart.name} {chart.version} -> {path}")
        except (PullError, helm_python.HelmError, OSError) as err:
            failed += 1
            print(f"FAIL {chart.name} {chart.version}: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

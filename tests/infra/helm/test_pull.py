"""`make charts` keeps an archive only if it is the pinned chart with the repository's digest."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from infra.addons.charts import CHARTS
from infra.helm import archives
from infra.helm.pull import PullError, pull_one
from tests.conftest import needs_charts

FLAGGER = CHARTS["flagger"]


@pytest.fixture
def source() -> Path:
    needs_charts()
    return archives.find_archive(FLAGGER)


def _fake_pull(archive: Path) -> Any:
    def pull(ref: str, *, version: str, destination: str, repo_url: str | None = None) -> None:
        assert (ref, version, repo_url) == (FLAGGER.chart, FLAGGER.version, FLAGGER.repo)
        shutil.copy(archive, Path(destination) / archive.name)

    return pull


def _index(digest: str) -> Any:
    entries = {"flagger": [{"version": FLAGGER.version, "digest": digest}]}
    return lambda url: yaml.safe_dump({"entries": entries}).encode()


def test_a_pinned_chart_with_the_published_digest_is_kept(source: Path, tmp_path: Path) -> None:
    digest = helm_python.digest(source).removeprefix("sha256:")
    path = pull_one(FLAGGER, tmp_path, pull=_fake_pull(source), fetch=_index(digest))
    assert path == tmp_path / "flagger-1.44.0.tgz" and path.read_bytes() == source.read_bytes()


def test_an_archive_whose_digest_differs_is_refused(source: Path, tmp_path: Path) -> None:
    with pytest.raises(PullError, match="the index says"):
        pull_one(FLAGGER, tmp_path, pull=_fake_pull(source), fetch=_index("0" * 64))
    assert not list(tmp_path.iterdir())


def test_an_archive_of_another_version_is_refused(tmp_path: Path) -> None:
    needs_charts()
    other = archives.find_archive(FLAGGER).parent / "flagger-1.43.0.tgz"
    renamed = tmp_path / "src" / "flagger-1.44.0.tgz"
    renamed.parent.mkdir()
    shutil.copy(other, renamed)
    with pytest.raises(PullError, match=r"got flagger 1\.43\.0"):
        pull_one(FLAGGER, tmp_path / "dest", pull=_fake_pull(renamed), fetch=_index("x"))

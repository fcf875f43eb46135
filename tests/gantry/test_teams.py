"""A bad platform/teams.yaml fails at config load (before any resource), naming the entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gantry.errors import ConfigError
from gantry.stack import load_config, read_stack_file
from gantry.teams import load_teams
from tests.conftest import REPO

GOOD = {
    "teams": [
        {
            "name": "alpha",
            "group": "g-alpha",
            "pools": ["cpu", "gpu"],
            "quota": {"cpu": 4, "memory_gib": 8, "pods": 10, "gpus": 1},
        },
        {
            "name": "beta",
            "group": "g-beta",
            "pools": ["cpu"],
            "quota": {"cpu": 2, "memory_gib": 4, "pods": 5},
        },
    ]
}


def load_with(tmp_path: Path, teams: dict) -> None:  # type: ignore[type-arg]
    path = tmp_path / "teams.yaml"
    path.write_text(yaml.safe_dump(teams))
    raw = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    load_config({**raw, "platform": {"teams_file": str(path)}})


def test_shipped_teams_file_is_valid() -> None:
    teams = load_teams(REPO / "platform" / "teams.yaml")
    assert teams.teams and all(t.quota.pods > 0 for t in teams.teams)


def test_good_file_loads(tmp_path: Path) -> None:
    load_with(tmp_path, GOOD)


def _bad(mutate) -> dict:  # type: ignore[no-untyped-def, type-arg]
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    mutate(data["teams"])
    return data


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda t: t.append(dict(t[0])), "teams[2] (alpha).name: duplicate team 'alpha'"),
        (lambda t: t[1]["quota"].update(cpu=-1), "teams[1] (beta).quota.cpu"),
        (lambda t: t[0]["quota"].update(gpus=-2), "teams[0] (alpha).quota.gpus"),
        (lambda t: t[1]["pools"].append("tpu"), "teams[1] (beta).pools: pool 'tpu' does not exist"),
        (lambda t: t[1]["quota"].update(gpus=1), "teams[1] (beta).pools: quota.gpus > 0"),
        (lambda t: t[0].update(name="monitoring"), "teams[0] (monitoring).name"),
        (lambda t: t[0].update(name="Bad_Name"), "teams[0] (Bad_Name).name"),
        (lambda t: t[0].update(quotas={}), "teams[0] (alpha).quotas: unknown key"),
    ],
    ids=[
        "duplicate",
        "negative-cpu",
        "negative-gpus",
        "unknown-pool",
        "gpus-without-gpu-pool",
        "reserved-name",
        "bad-name",
        "typo",
    ],
)
def test_bad_teams_file_names_the_entry(tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        load_with(tmp_path, _bad(mutate))
    message = str(err.value)
    assert expected in message
    assert "teams.yaml" in message and "\n" not in message


def test_missing_teams_file_is_a_config_error(tmp_path: Path) -> None:
    raw = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    with pytest.raises(ConfigError, match=r"platform\.teams_file"):
        load_config({**raw, "platform": {"teams_file": str(tmp_path / "nope.yaml")}})

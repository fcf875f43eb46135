"""infra/__main__.py, Pulumi's entry point: config read once, bad config -> clean RunError."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest

from gantry.stack import GantryConfig, read_stack_file
from infra.render import run_offline

REPO = Path(__file__).resolve().parents[2]


def run_main(raw: dict[str, Any]) -> Any:
    """Run infra/ the way Pulumi does (as a script), with `raw` as the stack's gantry:* config."""

    def program(_: GantryConfig) -> None:
        pulumi.runtime.set_all_config({f"gantry:{k}": json.dumps(v) for k, v in raw.items()}, [])
        runpy.run_path(str(REPO / "infra"), run_name="__main__")

    cfg = GantryConfig.model_validate(read_stack_file(REPO / "Pulumi.sandbox.yaml"))
    return run_offline(cfg, "main", program=program)


def test_main_reads_the_stack_config_and_builds_the_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # __main__ rewrites sys.path
    raw = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    raw["cluster"]["name"] = "from-main"
    index = run_main(raw)
    (cluster,) = index.of_type("gantry:cluster:KindCluster")
    assert cluster.name == "from-main"
    assert sys.path[0] == str(REPO)  # the project root, so `import infra` needs no install


def test_bad_config_is_a_one_line_run_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    raw = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    raw["pools"][0]["max_size"] = 0
    with pytest.raises(pulumi.RunError) as err:
        run_main(raw)
    assert str(err.value) == (
        "gantry:pools[0].max_size: Input should be greater than or equal to 1"
    )

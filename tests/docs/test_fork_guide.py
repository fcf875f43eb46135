"""The fork guide's YAML examples are real: taken from docs/fork-guide.md as written, they validate,
place the embedder on the new pool, create the new team, and pass the schedulability check.

(Adding a service is exercised by tests/infra/serving/test_new_service.py, which the guide cites.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gantry.stack import load_config, read_stack_file
from infra.preflight import schedulability_problems

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "fork-guide.md"


def _yaml_block(marker: str) -> Any:
    """The first ```yaml block of the guide that contains `marker`, parsed."""
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S)
    (block,) = [b for b in blocks if marker in b][:1]
    return yaml.safe_load(block)


def test_change_a_pool_and_add_a_team_as_the_guide_shows(tmp_path: Path) -> None:
    pools_and_services = _yaml_block("gpu-large")
    (new_team,) = _yaml_block("name: search")

    teams = yaml.safe_load((REPO / "platform" / "teams.yaml").read_text())
    serving = next(t for t in teams["teams"] if t["name"] == "ml-serving")
    serving["pools"] = ["cpu", "gpu-large"]  # "replace gpu with gpu-large in the team's pools
    serving["jobs"]["quota"]["gpu-large"] = serving["jobs"]["quota"].pop("gpu")  # and job quota"
    teams["teams"].append(new_team)
    teams_file = tmp_path / "teams.yaml"
    teams_file.write_text(yaml.safe_dump(teams))

    raw = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    raw["pools"] = pools_and_services["gantry:pools"]
    raw["services"] = {**raw["services"], **pools_and_services["gantry:services"]}
    raw["platform"] = {"teams_file": str(teams_file)}
    cfg = load_config(raw)

    index, problems = schedulability_problems(cfg, "fork-guide")
    assert problems == []
    (embedder,) = [
        d for d in index.find_manifests("Deployment") if d["metadata"]["name"] == "embedder"
    ]
    assert embedder["spec"]["template"]["spec"]["nodeSelector"] == {"gantry.dev/pool": "gpu-large"}
    namespaces = {m["metadata"]["name"] for m in index.find_manifests("Namespace")}
    assert "search" in namespaces

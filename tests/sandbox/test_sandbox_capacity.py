"""The sandbox's capacity check: Ray's node types hold each service's stable replicas at max plus
a canary, and every team's job quota; a GPU pool too small stops `up` before any process
starts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from sandbox_helpers import gantry

from gantry.errors import ConfigError
from gantry.pools import pool_facts
from gantry.stack import load_stack_file
from sandbox import lifecycle
from sandbox.capacity import capacity_problems, demands, supplies
from sandbox.lifecycle import Plan
from sandbox.state import Paths

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plan() -> Plan:
    return Plan.from_config(load_stack_file(REPO / "Pulumi.sandbox.yaml"))


def with_gpu_nodes(plan: Plan, max_size: int) -> Plan:
    cfg = load_stack_file(REPO / "Pulumi.sandbox.yaml")
    pools = [
        p.model_copy(update={"max_size": max_size}) if p.name == "gpu" else p for p in cfg.pools
    ]
    return dataclasses.replace(plan, pools=pool_facts(pools))


def test_the_shipped_sandbox_holds_its_worst_case(plan: Plan) -> None:
    assert capacity_problems(plan.specs, plan.pools, plan.settings, plan.job_quotas) == []


def test_what_is_counted(plan: Plan) -> None:
    emb = next(d for d in demands(plan.specs, plan.pools) if d.service == "embedder")
    # Serve replicas: 2 at max + a canary application at min 1, no surge; each replica takes
    # serve.yaml's num_cpus and the pod's GPU shared by its replicas_per_pod (2).
    assert (emb.max_pods, emb.canary, emb.surge) == (2, 1, 0)
    assert emb.per_pod == {"cpu": 1.0, "gpus": 0.5}
    by_pool = {s.pool: s for s in supplies(plan.pools, plan.settings)}
    assert by_pool["cpu"].nodes == 1 and by_pool["cpu"].per_node == {"cpu": 4.0, "gpus": 0.0}
    assert by_pool["gpu"].per_node == {"cpu": 1.0, "gpus": 1.0}


def test_a_gpu_pool_too_small_stops_up_before_anything(plan: Plan, tmp_path: Path) -> None:
    small = with_gpu_nodes(plan, 1)
    (line,) = capacity_problems(small.specs, small.pools, small.settings)
    assert line.startswith("pool gpu: needs 1.5 GPU, has 1 GPU, needs 3 CPU, has 1 CPU")
    assert "embedder (2 max + 1 canary + 0 surge)" in line
    assert "fix: raise gantry:pools[1].max_size to 3" in line
    # ml-serving's job quota on the pool (1 GPU, 1 core) is held beside the embedder.
    (line,) = capacity_problems(small.specs, small.pools, small.settings, small.job_quotas)
    assert line.startswith("pool gpu: needs 2.5 GPU, has 1 GPU, needs 4 CPU, has 1 CPU")
    assert line.endswith("ml-serving jobs quota); fix: raise gantry:pools[1].max_size to 4")
    paths = Paths(tmp_path / "state")
    with pytest.raises(ConfigError, match=r"pool gpu: needs 2\.5 GPU") as err:
        lifecycle.up(small, paths)
    assert "cannot hold their services at max replicas + a canary, and the teams' job" in str(
        err.value
    )
    assert not paths.root.exists()  # nothing was started, not even the state folder


def test_sandbox_up_cli_exits_2_with_one_line_per_pool(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "Pulumi.sandbox.yaml").read_text())
    for pool in doc["config"]["gantry:pools"]:
        if pool["name"] == "gpu":
            pool.update(max_size=1, desired_size=1)
    stack = tmp_path / "Pulumi.t.yaml"
    stack.write_text(yaml.safe_dump(doc))
    r = gantry("sandbox", "up", "--stack-file", str(stack), "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2, r.stderr
    assert "error: the sandbox's pools cannot hold" in r.stderr
    assert "\n  pool gpu: needs 2.5 GPU, has 1 GPU, needs 4 CPU, has 1 CPU" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "s").exists()

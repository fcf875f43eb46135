"""jobs/<name>/job.yaml and the teams' job quotas: validated against the stack with one-line
errors naming the file and key; what admission counts per pool; the quotas held on each pool by
the capacity check."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.capacity import PoolSupply, check, job_demands, problems
from gantry.errors import ConfigError
from gantry.jobs import (
    JobRuntime,
    head_pool,
    job_names,
    job_runtime,
    load_job,
    pod_sets,
    requests_by_pool,
    runtime_config,
)
from gantry.stack import GantryConfig, load_config, load_stack_file, read_stack_file
from tests.conftest import REPO

JOB: dict[str, Any] = {
    "team": "ml-research",
    "pool": "cpu",
    "module": "jobs.example.train",
    "head": {"cpu": 0.5, "memory_gib": 1},
    "workers": {"replicas": 2, "cpu": 1, "memory_gib": 2},
    "config": {"epochs": 3},
}


@pytest.fixture(scope="module")
def cfg() -> GantryConfig:
    return load_stack_file(REPO / "Pulumi.sandbox.yaml")


def write_job(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    (tmp_path / name).mkdir()
    (tmp_path / name / "job.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def test_the_shipped_jobs_load(cfg: GantryConfig) -> None:
    names = job_names()
    assert {"digits", "embeddings"} <= set(names)
    for name in names:
        load_job(name, cfg)


def test_pod_sets_put_the_head_on_the_system_pool_and_workers_on_theirs(
    tmp_path: Path, cfg: GantryConfig
) -> None:
    job = load_job("train", cfg, write_job(tmp_path, "train", JOB))
    head, workers = pod_sets(job, head_pool(cfg))
    assert (head.pool, head.count, workers.pool, workers.count) == ("cpu", 1, "cpu", 2)
    assert requests_by_pool((head, workers)) == {"cpu": {"cpu": 2.5, "memory_gib": 5, "gpus": 0}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"team": "nobody"}, "train/job.yaml: team: 'nobody' is not a team"),
        ({"pool": "gpu"}, "train/job.yaml: pool: team 'ml-research' may not use pool 'gpu'"),
        ({"priority": "gantry-serving"}, "train/job.yaml: priority: Input should be"),
        ({"workers": {"cpu": 64}}, "workers.cpu: 64 per worker does not fit a node of pool 'cpu'"),
        ({"outputs": ["../escape"]}, "train/job.yaml: outputs[0]: '../escape' must stay inside"),
        ({"module": "jobs/x.py"}, "train/job.yaml: module: String should match pattern"),
        ({"epochs": 3}, "train/job.yaml: epochs: unknown key (typo?)"),
    ],
)
def test_a_bad_job_file_names_its_key(
    tmp_path: Path, cfg: GantryConfig, change: dict[str, Any], message: str
) -> None:
    doc = {**copy.deepcopy(JOB), **change}
    with pytest.raises(ConfigError) as err:
        load_job("train", cfg, write_job(tmp_path, "train", doc))
    assert message in str(err.value)


def test_an_unknown_job_lists_the_known_ones(tmp_path: Path, cfg: GantryConfig) -> None:
    write_job(tmp_path, "train", JOB)
    with pytest.raises(ConfigError, match=r"no job 'nope' .*jobs: \['train'\]"):
        load_job("nope", cfg, tmp_path)


def test_config_overrides_only_known_keys(tmp_path: Path, cfg: GantryConfig) -> None:
    job = load_job("train", cfg, write_job(tmp_path, "train", JOB))
    assert runtime_config(job, {"epochs": 5}) == {"epochs": 5}
    with pytest.raises(ConfigError, match=r"--set lr: not a config key of job 'train'"):
        runtime_config(job, {"lr": 0.1})
    with pytest.raises(ConfigError, match=r"--set epochs='x': job 'train' has epochs: 3 \(int\)"):
        runtime_config(job, {"epochs": "x"})


def test_the_runtime_round_trips_through_the_environment() -> None:
    rt = JobRuntime(
        name="t", run_dir="/r", workers=2, worker_resources={"CPU": 1}, cuda=False,
        max_failures=3,
    )  # fmt: skip
    assert job_runtime(rt.env()) == rt and rt.backend == "gloo"
    with pytest.raises(ConfigError, match="GANTRY_JOB_RUNTIME is not set"):
        job_runtime({})


def teams_with_jobs(jobs: dict[str, Any]) -> dict[str, Any]:
    teams = yaml.safe_load((REPO / "platform" / "teams.yaml").read_text())
    teams["teams"][1]["jobs"] = jobs  # ml-research: pools [cpu]
    return teams


def load_teams_doc(tmp_path: Path, teams: dict[str, Any]) -> GantryConfig:
    path = tmp_path / "teams.yaml"
    path.write_text(yaml.safe_dump(teams))
    raw = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    return load_config({**raw, "platform": {"teams_file": str(path)}})


def test_a_job_quota_on_a_pool_the_team_may_not_use_names_the_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"teams\[1\] \(ml-research\)\.jobs\.quota\.gpu: pool"):
        load_teams_doc(tmp_path, teams_with_jobs({"quota": {"gpu": {"cpu": 1}}}))


def test_job_gpus_on_a_cpu_pool_are_refused(tmp_path: Path) -> None:
    teams = teams_with_jobs({"quota": {"cpu": {"gpus": 1}}})
    with pytest.raises(ConfigError, match=r"jobs\.quota\.cpu\.gpus: 1 GPUs on pool 'cpu'"):
        load_teams_doc(tmp_path, teams)


def test_job_quotas_are_held_on_their_pools_with_a_fix(cfg: GantryConfig) -> None:
    demands = job_demands(cfg.platform.teams.teams, "platform/teams.yaml")
    assert {(d.service, d.pool) for d in demands} == {
        ("ml-serving jobs quota", "cpu"),
        ("ml-serving jobs quota", "gpu"),
        ("ml-research jobs quota", "cpu"),
    }
    cpu = PoolSupply("cpu", 1, {"cpu": 1.2, "memory_gib": 16}, None)
    (line,) = problems(check([cpu], demands))
    assert line.startswith("pool cpu: needs 1.5 CPU, has 1.2 CPU")
    assert "lower platform/teams.yaml: teams[1] (ml-research).jobs.quota.cpu to cpu 0.7" in line

"""The jobs' RayJobs checked with the whole apply set, as submitted once it is applied: valid
against the pinned CRDs, after what they need, landing on their pools, within what their
queues can ever admit; and the team quotas holding the services plus the jobs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.jobs import load_job
from gantry.pools import pool_facts
from gantry.stack import GantryConfig
from infra.checks.apply_order import missing_before
from infra.checks.apply_set import ApplySet
from infra.checks.jobs import job_problems
from infra.checks.offline import check_rendered
from infra.checks.schedulability import check, job_quota_reach
from infra.checks.schemas import crd_schemas, validate_objects
from infra.jobs import RenderedJob, rayjob, render_jobs
from infra.render import ResourceIndex
from tests.conftest import STACKS, stack_config

Checked = Callable[[str], tuple[ApplySet, list[str]]]
Program = Callable[[str], ResourceIndex]


def with_teams(cfg: GantryConfig, team: str, **changes: Any) -> GantryConfig:
    """`cfg` with one team's entry deep-updated (`jobs__borrowing=False`), validated again."""
    raw = cfg.model_dump()
    for t in raw["platform"]["teams"]["teams"]:
        if t["name"] == team:
            for dotted, value in changes.items():
                *path, last = dotted.split("__")
                node = t
                for part in path:
                    node = node[part]
                node[last] = value
    return GantryConfig.model_validate(raw)


@pytest.fixture
def fixture_job(tmp_path: Path) -> Callable[..., RenderedJob]:
    """`make(cfg, **job)`: a job.yaml of our own (jobs/fixture/), rendered for `cfg`."""

    def make(cfg: GantryConfig, **job: Any) -> RenderedJob:
        folder = tmp_path / "jobs" / "fixture"
        folder.mkdir(parents=True, exist_ok=True)
        base = {"team": "ml-serving", "pool": "gpu", "module": "jobs.fixture.main"}
        (folder / "job.yaml").write_text(yaml.safe_dump({**base, **job}))
        spec = load_job("fixture", cfg, folder.parent)
        return RenderedJob(spec, rayjob(spec, cfg), cfg)

    return make


@pytest.mark.parametrize("stack", STACKS)
def test_the_shipped_jobs_pass_with_the_whole_apply_set(apply_set: Checked, stack: str) -> None:
    objects, _ = apply_set(stack)  # the session's Helm renders, reused
    cfg = stack_config(stack)
    jobs = render_jobs(cfg)
    assert jobs
    with_jobs, problems = check_rendered(
        objects.index, objects.releases, cfg.cluster.kubernetes_version, False, jobs
    )
    assert problems == []
    assert {e.stage for e in with_jobs if e.manifest["kind"] == "RayJob"} == {"submitted"}
    # Valid against the RayJob CRD of the pinned KubeRay chart (its crds/ folder).
    crds = crd_schemas(crd for rel in objects.releases.values() for crd in rel.crds)
    assert any(kind == "RayJob" for _, _, kind in crds)
    assert validate_objects([j.manifest for j in jobs], "1.33", crds=crds) == []


def _pinned_crds(objects: ApplySet) -> Any:
    """Every CRD the apply set installs, with its schema (Kueue's come from its templates)."""
    docs = [crd for rel in objects.releases.values() for crd in rel.crds]
    docs += [e.manifest for e in objects if e.manifest["kind"] == "CustomResourceDefinition"]
    return crd_schemas(docs)


def test_broken_objects_fail_their_crd_schemas(apply_set: Checked) -> None:
    objects, _ = apply_set("sandbox")
    crds = _pinned_crds(objects)
    job = copy.deepcopy(render_jobs(stack_config("sandbox"))[0].manifest)
    job["spec"]["activeDeadlineSeconds"] = "an hour"
    (problem,) = validate_objects([job], "1.33", crds=crds)
    assert "spec.activeDeadlineSeconds" in problem and "RayJob" in problem
    cq = copy.deepcopy(next(e.manifest for e in objects if e.manifest["kind"] == "ClusterQueue"))
    assert validate_objects([cq], "1.33", crds=crds) == []
    cq["spec"]["queueingStrategy"] = "Fastest"
    (problem,) = validate_objects([cq], "1.33", crds=crds)
    assert "ClusterQueue" in problem and "spec.queueingStrategy" in problem


def test_a_job_naming_a_missing_queue_or_priority_is_named(apply_set: Checked) -> None:
    objects, _ = apply_set("sandbox")
    job = copy.deepcopy(render_jobs(stack_config("sandbox"))[0].manifest)
    job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "nightly"
    job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] = "urgent"
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"][1][
        "persistentVolumeClaim"
    ]["claimName"] = "scratch"
    with_job = ApplySet(objects.index, objects.releases, [(job, "jobs/x/job.yaml")])
    problems = [p for p in missing_before(with_job) if "jobs/x/job.yaml" in p]
    ns = job["metadata"]["namespace"]
    assert any(f"needs LocalQueue {ns}/nightly: none" in p for p in problems), problems
    assert any("needs WorkloadPriorityClass urgent: none" in p for p in problems)
    assert any(f"needs PersistentVolumeClaim {ns}/scratch: none" in p for p in problems)


def test_a_job_bigger_than_its_queue_can_ever_admit(
    program: Program, fixture_job: Callable[..., RenderedJob]
) -> None:
    cfg = stack_config("sandbox")
    job = fixture_job(cfg, workers={"replicas": 3, "cpu": 0.3, "memory_gib": 1, "gpus": 1})
    (line,) = job_problems(program("sandbox").manifests(), [job])
    assert line == (
        f"{job.source}: needs 3 nvidia.com/gpu on pool gpu (workers.replicas x workers.gpus), "
        "more than team ml-serving's queue can ever admit there (1 nvidia.com/gpu nominal): "
        "it would wait forever; lower workers.replicas x workers.gpus or raise "
        "platform/teams.yaml: teams[0] (ml-serving).jobs.quota.gpu.gpus"
    )


def test_borrowing_lets_a_job_use_the_cohorts_idle_quota(
    run_config: Callable[[GantryConfig, str], ResourceIndex], program: Program
) -> None:
    """jobs/digits needs 1.5 cores on pool cpu where ml-research's nominal quota is 1: it runs
    by borrowing ml-serving's idle half core, and never without borrowing."""
    cfg = stack_config("sandbox")
    (digits,) = [j for j in render_jobs(cfg) if j.spec.name == "digits"]
    assert job_problems(program("sandbox").manifests(), [digits]) == []
    alone = with_teams(cfg, "ml-research", jobs__borrowing=False)
    (digits,) = [j for j in render_jobs(alone) if j.spec.name == "digits"]
    problems = job_problems(run_config(alone, "sandbox").manifests(), [digits])
    assert any(
        line.startswith(
            "jobs/digits/job.yaml: needs 1.5 CPU on pool cpu (head.cpu + "
            "workers.replicas x workers.cpu)"
        )
        and "(1 CPU nominal)" in line
        for line in problems
    ), problems


def test_pods_that_do_not_land_on_their_pool_are_named(
    program: Program, fixture_job: Callable[..., RenderedJob]
) -> None:
    cfg = stack_config("sandbox")
    job = fixture_job(cfg, workers={"replicas": 1, "cpu": 1, "memory_gib": 2, "gpus": 1})
    cluster = job.manifest["spec"]["rayClusterSpec"]
    del cluster["workerGroupSpecs"][0]["template"]["spec"]["tolerations"]
    problems = job_problems(program("sandbox").manifests(), [job])
    assert any(
        p.startswith(f"{job.source}: workers: pods do not land on pool gpu") for p in problems
    )
    assert any("does not tolerate taint nvidia.com/gpu=present:NoSchedule" in p for p in problems)


def test_team_quotas_hold_the_services_and_the_jobs(
    program: Program, run_config: Callable[[GantryConfig, str], ResourceIndex]
) -> None:
    cfg = stack_config("sandbox")
    reach = job_quota_reach(program("sandbox").manifests())
    # ml-serving's jobs: 1 GPU nominal (no other queue lends GPUs); ml-research's: 1 core of
    # its own + ml-serving's half core on pool cpu.
    assert reach["ml-serving"]["nvidia.com/gpu"] == 1
    assert reach["ml-research"]["cpu"] == pytest.approx(1.5)
    short = with_teams(cfg, "ml-serving", quota__gpus=4)
    problems = check(run_config(short, "sandbox").manifests(), pool_facts(short.pools))
    (line,) = [p for p in problems if "requests.nvidia.com/gpu" in p]
    assert line.startswith(
        "embedder,jobs: team ml-serving: quota requests.nvidia.com/gpu=4 (quota.gpus in the "
        "teams file) is short by 1 nvidia.com/gpu (needs 5 nvidia.com/gpu: "
    )
    assert line.endswith("jobs 1 nvidia.com/gpu (jobs.quota))")


def test_a_name_kuberay_refuses_is_named(
    program: Program, fixture_job: Callable[..., RenderedJob]
) -> None:
    job = fixture_job(stack_config("sandbox"))
    manifest = copy.deepcopy(job.manifest)
    manifest["metadata"]["name"] = "x" * 48
    (line,) = job_problems(
        program("sandbox").manifests(), [RenderedJob(job.spec, manifest, job.cfg)]
    )
    assert line.startswith(f"{job.source}: KubeRay refuses the RayJob name 'xxx")
    assert "at most 47 characters" in line

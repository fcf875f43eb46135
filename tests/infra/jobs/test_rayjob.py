"""A job.yaml as its RayJob (infra/jobs/rayjob.py): queued by Kueue in the team's queue, its
pods on the pools job.yaml names, with the runtime the job's code reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.errors import ConfigError
from gantry.jobs import JobRuntime, job_names, load_job
from gantry.pools import GPU_RESOURCE, pool_facts
from infra.addons.batch import JOB_STORAGE_PVC, LOCAL_QUEUE, PRIORITY_LABEL, QUEUE_LABEL
from infra.jobs import render_job_yaml, render_jobs, write_jobs
from infra.jobs.rayjob import (
    JOB_STORAGE_MOUNT,
    RAY_VERSION,
    SUBMISSION_MODE,
    WORKER_SLOT,
    job_image,
    rayjob,
)
from tests.conftest import STACKS, stack_config

GPU_JOB = {
    "team": "ml-serving",
    "pool": "gpu",
    "priority": "gantry-preemptible",
    "module": "jobs.fixture.main",
    "head": {"cpu": 0.5, "memory_gib": 1},
    "workers": {"replicas": 1, "cpu": 1, "memory_gib": 3, "gpus": 1, "max_failures": 2},
    "max_run_s": 1200,
    "config": {"rows": 10},
}


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Callable[..., Path]:
    """`make(name, **job)`: a jobs folder (and its shared Dockerfile) holding one job.yaml."""
    root = tmp_path / "jobs"

    def make(name: str, **job: Any) -> Path:
        (root / name).mkdir(parents=True)
        (root / name / "job.yaml").write_text(yaml.safe_dump(job))
        (root / "Dockerfile").write_text("FROM python:3.11-slim\n")
        return root

    return make


def _pod(job: dict[str, Any], group: str) -> dict[str, Any]:
    cluster = job["spec"]["rayClusterSpec"]
    g = cluster["headGroupSpec"] if group == "head" else cluster["workerGroupSpecs"][0]
    spec: dict[str, Any] = g["template"]["spec"]
    return spec


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["containers"][0]["env"]}


def test_a_gpu_job(jobs_dir: Callable[..., Path]) -> None:
    cfg = stack_config("sandbox")
    folder = jobs_dir("fixture", **GPU_JOB)
    job = load_job("fixture", cfg, folder)
    m = rayjob(job, cfg)
    assert (m["apiVersion"], m["kind"]) == ("ray.io/v1", "RayJob")
    assert m["metadata"]["namespace"] == "ml-serving"
    labels = m["metadata"]["labels"]
    assert labels[QUEUE_LABEL] == LOCAL_QUEUE
    assert labels[PRIORITY_LABEL] == "gantry-preemptible"
    spec = m["spec"]
    assert spec["entrypoint"] == "python -m jobs.fixture.main"
    assert spec["submissionMode"] == SUBMISSION_MODE == "HTTPMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["activeDeadlineSeconds"] == 1200
    assert spec["ttlSecondsAfterFinished"] > 0
    assert "suspend" not in spec  # Kueue's webhook suspends it at creation
    assert spec["rayClusterSpec"]["rayVersion"] == RAY_VERSION

    pools = pool_facts(cfg.pools)
    head, workers = _pod(m, "head"), _pod(m, "workers")
    # The head on the first cpu pool, untainted; the workers on the GPU pool, tolerating its
    # taint exactly as the pool model spells it.
    assert head["nodeSelector"] == pools["cpu"].node_selector
    assert "tolerations" not in head
    assert workers["nodeSelector"] == pools["gpu"].node_selector
    assert workers["tolerations"] == pools["gpu"].tolerations
    group = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["groupName"] != "head"  # Kueue reserves it
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (1, 1, 1)
    assert group["resources"] == {WORKER_SLOT: "1"}
    res = workers["containers"][0]["resources"]
    assert (
        res["requests"] == res["limits"] == {"cpu": "1000m", "memory": "3072Mi", GPU_RESOURCE: "1"}
    )
    assert head["containers"][0]["resources"]["limits"] == {"cpu": "500m", "memory": "1024Mi"}
    for pod in (head, workers):
        assert pod["priorityClassName"] == "gantry-preemptible"
        assert pod["securityContext"]["runAsNonRoot"] is True
        container = pod["containers"][0]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "job-storage", "mountPath": JOB_STORAGE_MOUNT} in container["volumeMounts"]
        assert {"name": "job-storage", "persistentVolumeClaim": {"claimName": JOB_STORAGE_PVC}} in (
            pod["volumes"]
        )

    runtime = JobRuntime.model_validate_json(_env(workers)["GANTRY_JOB_RUNTIME"])
    assert runtime == JobRuntime(
        name="fixture",
        run_dir=f"{JOB_STORAGE_MOUNT}/fixture",
        config={"rows": 10},
        workers=1,
        worker_resources={"CPU": 1, "GPU": 1, WORKER_SLOT: 1},
        cuda=True,  # real GPUs on a cluster: NCCL
        max_failures=2,
    )
    assert _env(head) == _env(workers)


def test_ray_pods_get_no_istio_sidecar(jobs_dir: Callable[..., Path]) -> None:
    cfg = stack_config("sandbox")
    m = rayjob(load_job("fixture", cfg, jobs_dir("fixture", **GPU_JOB)), cfg)
    for group in ("head", "workers"):
        cluster = m["spec"]["rayClusterSpec"]
        g = cluster["headGroupSpec"] if group == "head" else cluster["workerGroupSpecs"][0]
        meta = g["template"]["metadata"]
        assert meta["labels"]["sidecar.istio.io/inject"] == "false"
        assert meta["annotations"]["sidecar.istio.io/inject"] == "false"


def test_a_cpu_job_runs_without_gpus(jobs_dir: Callable[..., Path]) -> None:
    cfg = stack_config("sandbox")
    job = {**GPU_JOB, "team": "ml-research", "pool": "cpu", "workers": {"replicas": 2, "cpu": 0.5}}
    m = rayjob(load_job("fixture", cfg, jobs_dir("fixture", **job)), cfg)
    workers = _pod(m, "workers")
    assert "tolerations" not in workers
    assert GPU_RESOURCE not in workers["containers"][0]["resources"]["limits"]
    runtime = json.loads(_env(workers)["GANTRY_JOB_RUNTIME"])
    assert runtime["cuda"] is False and runtime["worker_resources"]["GPU"] == 0


def test_image_follows_the_stacks_registry(jobs_dir: Callable[..., Path]) -> None:
    folder = jobs_dir("fixture", **GPU_JOB)
    kind, eks = stack_config("sandbox"), stack_config("eks")
    ref = job_image(load_job("fixture", kind, folder), kind)
    repo, tag = ref.split(":")
    assert repo == "gantry/jobs" and len(tag) == 12  # loaded into kind's nodes, no registry
    eks_ref = job_image(load_job("fixture", eks, folder), eks)
    assert eks_ref.startswith("${AWS_ACCOUNT_ID}.dkr.ecr.us-west-2.amazonaws.com/gantry/jobs:")
    # A change to what the image is built from changes the tag.
    (folder / "Dockerfile").write_text("FROM python:3.12-slim\n")
    assert job_image(load_job("fixture", kind, folder), kind) != ref


@pytest.mark.parametrize("stack", STACKS)
def test_the_shipped_jobs_render(stack: str, tmp_path: Path) -> None:
    cfg = stack_config(stack)
    jobs = render_jobs(cfg)
    assert [j.spec.name for j in jobs] == job_names()
    assert write_jobs(jobs, tmp_path) == len(jobs)
    for j in jobs:
        written = yaml.safe_load((tmp_path / "jobs" / f"{j.spec.name}.yaml").read_text())
        assert written == j.manifest
        assert j.source == f"jobs/{j.spec.name}/job.yaml"


def test_render_job_yaml_is_what_kubectl_gets() -> None:
    cfg = stack_config("sandbox")
    name = job_names()[0]
    text = render_job_yaml(name, cfg, "sandbox", {})
    assert text.startswith(f"# RayJob of jobs/{name} for stack sandbox")
    assert "&id" not in text  # no YAML anchors for kubectl's readers
    assert yaml.safe_load(text) == rayjob(load_job(name, cfg), cfg)


def test_render_job_yaml_applies_overrides_and_names_bad_keys() -> None:
    cfg = stack_config("sandbox")
    job = load_job(job_names()[0], cfg)
    key = next(iter(job.config))
    doc = yaml.safe_load(render_job_yaml(job.name, cfg, "sandbox", {key: 7}))
    env = _env(_pod(doc, "head"))
    assert json.loads(env["GANTRY_JOB_RUNTIME"])["config"][key] == 7
    with pytest.raises(ConfigError, match="--set nope"):
        render_job_yaml(job.name, cfg, "sandbox", {"nope": 1})


def test_the_image_tag_covers_everything_the_dockerfile_copies() -> None:
    """A change to any file the jobs image copies gives the image a new tag (a new pull)."""
    from dockerfile_parse import DockerfileParser

    from infra.jobs.rayjob import JOB_IMAGE_INPUTS
    from tests.conftest import REPO

    parser = DockerfileParser(path=str(REPO / "jobs" / "Dockerfile"))
    sources = [
        i["value"].split()[0]
        for i in parser.structure
        if i["instruction"] == "COPY" and not i["value"].startswith("--from")
    ]
    hashed = ("jobs", *JOB_IMAGE_INPUTS)
    assert sources and all(
        any(src == h or src.startswith(f"{h}/") for h in hashed) for src in sources
    ), sources

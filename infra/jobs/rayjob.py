"""A job's RayJob: `jobs/<name>/job.yaml` (gantry/jobs.py) as KubeRay runs it and Kueue queues it.

Not created by `pulumi up`: a team submits it (`gantry job render NAME --stack S` prints it for
`kubectl create -f -`), and `gantry render` writes every job's under `<out>/jobs/`.

- In the team's namespace, labelled with the team's LocalQueue and the job's priority (Kueue's
  WorkloadPriorityClass; the pods get the PriorityClass of the same name).
- `spec.suspend` is not set: Kueue's webhook suspends every RayJob created in a team namespace
  (platform/kueue/values.yaml) and Kueue unsuspends it once admitted. Left out of the file, a
  re-applied file never suspends a running job again.
- `submissionMode: HTTPMode`: KubeRay submits the entrypoint to the head's dashboard itself.
  Kueue 0.19 admits a RayJob by its pod sets: the head, each worker group, plus a `submitter`
  pod set in K8sJobMode (the submitter Job's pod, 0.5 CPU / 200 MiB by default) or the
  submitter container added to the head in SidecarMode. In HTTPMode the pod sets are exactly
  the head and the workers, what `gantry.jobs.pod_sets` and the teams' quotas count.
- The head on the stack's first cpu pool, the workers on the job's pool, each with the pool's
  nodeSelector and tolerations (gantry.pools); requests = limits from job.yaml.
- Each worker pod advertises one `gantry-worker` slot to Ray, and each Ray Train worker or
  model actor asks for one (`JobRuntime.worker_resources`): exactly one per worker pod, none on
  the head. CPUs alone cannot say so: a 0.5-core pod advertises 1 CPU to Ray (KubeRay rounds
  up), which two 0.5-CPU workers would share. The head's CPUs take the driver's light tasks
  (Ray Data reads and writes).
- Every pod mounts the team's `job-storage` volume; the job's run directory is
  `/mnt/gantry-jobs/<job>`, the same for every run and attempt (a resumed job finds its
  checkpoints).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gantry import project
from gantry.jobs import (
    JOB_FILE,
    JobRuntime,
    JobSpec,
    head_pool,
    job_names,
    load_job,
    runtime_config,
)
from gantry.pools import GPU_RESOURCE, PoolScheduling, pool_facts
from gantry.stack import GantryConfig
from infra.addons.batch import (
    JOB_STORAGE_PVC,
    LOCAL_QUEUE,
    PRIORITY_LABEL,
    QUEUE_LABEL,
)
from infra.cluster.eks import IMAGE_PLATFORM, ecr_registry
from infra.serving.images import SHARED_INPUTS, inputs_hash
from infra.serving.manifests import (
    RESTRICTED_CONTAINER_CONTEXT,
    RESTRICTED_POD_CONTEXT,
    cpu_quantity,
    memory_quantity,
)

RAY_API = "ray.io/v1"
RAY_VERSION = "2.60.0"  # Ray in the jobs image (pyproject.toml's `jobs` extra)
SUBMISSION_MODE = "HTTPMode"  # see the module docstring: Kueue then counts head + workers only
WORKER_GROUP = "workers"  # Kueue reserves the pod set name "head" for the head
# Ray custom resource: one per worker pod; JobRuntime.worker_resources asks for one per worker.
WORKER_SLOT = "gantry-worker"
JOB_LABEL = "gantry.dev/job"
# KubeRay's limit on a RayJob's name (its RayCluster's name, 53, less a 6-character suffix); it
# must also start with a letter (a DNS-1035 label).
MAX_RAYJOB_NAME = 47
JOB_STORAGE_MOUNT = "/mnt/gantry-jobs"  # the team's job-storage volume, in every pod
# Seconds the finished job's Ray cluster stays up (its dashboard and logs) before KubeRay deletes
# it. Kueue releases the job's quota when it finishes, so these pods briefly hold node room
# outside any quota: kept short.
TTL_AFTER_FINISHED_S = 60
TMP_SIZE = "2Gi"  # /tmp (Ray's session directory and spill files): the root filesystem is read-only
# Istio's per-pod switch; label and annotation (the older form, which Gantry's checks read).
SIDECAR_INJECT = "sidecar.istio.io/inject"
# For the AWS account that `gantry job render` (offline, no credentials) cannot know: substitute
# it before submitting (`envsubst`).
AWS_ACCOUNT_PLACEHOLDER = "${AWS_ACCOUNT_ID}"


def image_registry(cfg: GantryConfig) -> str | None:
    """Where the stack's images are, as the serving layer pushes them (infra/serving/images.py):
    EKS: `eks.image_registry`, else ECR in the stack's region; kind and existing clusters: none
    (kind's nodes are loaded with the image, an existing cluster shares the Docker daemon)."""
    eks = cfg.cluster.eks
    if cfg.cluster.provider != "eks" or eks is None:
        return None
    return eks.image_registry or ecr_registry(AWS_ACCOUNT_PLACEHOLDER, eks.region)


# What jobs/Dockerfile copies besides its own folder: the core (JobRuntime) and the embedder's
# model code (jobs/embeddings). Keep in step with its COPY lines (tests/infra/jobs checks).
JOB_IMAGE_INPUTS = (*SHARED_INPUTS, "gantry", "services/embedder")


def job_image(job: JobSpec, cfg: GantryConfig) -> str:
    """`[<registry>/]<repository>:<tag>`, the tag a hash of what the image is built from: the
    Dockerfile's folder (jobs/: every job shares it) and everything else it copies."""
    repo = job.directory.parent.parent
    dockerfile = (job.directory / job.image.dockerfile).resolve()
    platform = IMAGE_PLATFORM if cfg.cluster.provider == "eks" else None
    tag = inputs_hash(
        [dockerfile.parent, *(repo / p for p in JOB_IMAGE_INPUTS)],
        repo,
        [job.image.dockerfile, *([platform] if platform else [])],
    )
    ref = f"{job.image.repository}:{tag}"
    registry = image_registry(cfg)
    return f"{registry.rstrip('/')}/{ref}" if registry else ref


def job_runtime(job: JobSpec, config: Mapping[str, Any] | None = None) -> JobRuntime:
    """What the job's code is handed on a cluster (env GANTRY_JOB_RUNTIME)."""
    w = job.workers
    return JobRuntime(
        name=job.name,
        run_dir=f"{JOB_STORAGE_MOUNT}/{job.name}",
        config=dict(job.config if config is None else config),
        workers=w.replicas,
        worker_resources={"CPU": w.cpu, "GPU": float(w.gpus), WORKER_SLOT: 1.0},
        cuda=w.gpus > 0,  # real GPUs on a cluster: NCCL
        max_failures=w.max_failures,
    )


def _resources(cpu: float, memory_gib: float, gpus: int, pool: PoolScheduling) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory_gib)}
    if gpus:
        amounts[pool.gpu_resource or GPU_RESOURCE] = str(gpus)
    return {"requests": amounts, "limits": dict(amounts)}  # request = limit (job.yaml)


def _pod(
    job: JobSpec,
    role: str,
    pool: PoolScheduling,
    image: str,
    env: list[dict[str, str]],
    resources: dict[str, Any],
) -> dict[str, Any]:
    """A Ray pod template: Pod Security `restricted`, on `pool`, with the job volume."""
    # No Istio sidecar, although the team namespace injects one: KubeRay's operator (outside the
    # mesh) calls the head's dashboard in plaintext, which a sidecar under STRICT mTLS refuses;
    # and Ray's processes talk over many dynamic ports (workers, object transfer) that Envoy
    # would proxy for nothing. NetworkPolicies still fence the pods (infra/addons/tenancy.py).
    no_sidecar = {SIDECAR_INJECT: "false"}
    container = {
        "name": f"ray-{role}",
        "image": image,
        "imagePullPolicy": "IfNotPresent",  # tags are content hashes
        "env": [dict(e) for e in env],
        "resources": resources,
        "securityContext": copy.deepcopy(RESTRICTED_CONTAINER_CONTEXT),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "job-storage", "mountPath": JOB_STORAGE_MOUNT},
        ],
    }
    spec: dict[str, Any] = {
        "priorityClassName": job.priority,
        "automountServiceAccountToken": False,  # Ray never calls the API (no autoscaler)
        "nodeSelector": dict(pool.node_selector),
        **({"tolerations": [dict(t) for t in pool.tolerations]} if pool.tolerations else {}),
        "securityContext": copy.deepcopy(RESTRICTED_POD_CONTEXT),
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
            {"name": "job-storage", "persistentVolumeClaim": {"claimName": JOB_STORAGE_PVC}},
        ],
    }
    return {
        "metadata": {"labels": {JOB_LABEL: job.name, **no_sidecar}, "annotations": no_sidecar},
        "spec": spec,
    }


def rayjob(
    job: JobSpec,
    cfg: GantryConfig,
    config: Mapping[str, Any] | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    """The job's RayJob (ray.io/v1) for stack `cfg`; `config` replaces job.yaml's `config`."""
    pools = pool_facts(cfg.pools)
    head_on, workers_on = pools[head_pool(cfg)], pools[job.pool]
    image = image or job_image(job, cfg)
    env = [{"name": k, "value": v} for k, v in job_runtime(job, config).env().items()] + [
        {"name": "HOME", "value": "/tmp"},
        # KubeRay calls the dashboard without a token.
        {"name": "RAY_AUTH_MODE", "value": "disabled"},
    ]
    h, w = job.head, job.workers
    return {
        "apiVersion": RAY_API,
        "kind": "RayJob",
        "metadata": {
            "name": job.name,
            "namespace": job.team,  # the team's namespace has its name (infra/addons/tenancy.py)
            "labels": {
                QUEUE_LABEL: LOCAL_QUEUE,
                PRIORITY_LABEL: job.priority,
                JOB_LABEL: job.name,
                "app.kubernetes.io/part-of": "gantry",
            },
        },
        "spec": {
            "entrypoint": f"python -m {job.module}",
            "submissionMode": SUBMISSION_MODE,
            # Kueue requires it: a finished job's cluster would keep holding the team's quota.
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_S,
            # From admission (KubeRay's start time), not from submission: queueing is free.
            "activeDeadlineSeconds": job.max_run_s,
            "rayClusterSpec": {
                "rayVersion": RAY_VERSION,
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": _pod(
                        job,
                        "head",
                        head_on,
                        image,
                        env,
                        _resources(h.cpu, h.memory_gib, 0, head_on),
                    ),
                },
                "workerGroupSpecs": [
                    {
                        "groupName": WORKER_GROUP,
                        # A fixed size: Kueue admits none of a job that scales itself.
                        "replicas": w.replicas,
                        "minReplicas": w.replicas,
                        "maxReplicas": w.replicas,
                        "rayStartParams": {},
                        "resources": {WORKER_SLOT: "1"},
                        "template": _pod(
                            job,
                            "worker",
                            workers_on,
                            image,
                            env,
                            _resources(w.cpu, w.memory_gib, w.gpus, workers_on),
                        ),
                    }
                ],
            },
        },
    }


@dataclass(frozen=True)
class RenderedJob:
    """A job's RayJob for one stack, with what the checks need to name the file and key."""

    spec: JobSpec
    manifest: dict[str, Any]
    cfg: GantryConfig  # the stack it was rendered for

    @property
    def source(self) -> str:
        """The job.yaml as shown to the user: "jobs/digits/job.yaml"."""
        return project.shown(self.spec.directory / JOB_FILE)


def render_jobs(cfg: GantryConfig, directory: Path | None = None) -> list[RenderedJob]:
    """Every job's RayJob (`jobs/*/job.yaml`, or those under `directory`). A bad job.yaml raises
    ConfigError naming its file and key."""
    jobs = [load_job(name, cfg, directory) for name in job_names(directory)]
    return [RenderedJob(job, rayjob(job, cfg), cfg) for job in jobs]


def render_job_yaml(
    name: str,
    cfg: GantryConfig,
    stack: str,
    overrides: Mapping[str, Any] | None = None,
) -> str:
    """`gantry job render NAME --stack S`: the job's RayJob for stack `cfg` (named `stack`) as
    YAML, `--set` overrides applied to its config. ConfigError (one line naming the file and
    key) on a bad job.yaml or override."""
    job = load_job(name, cfg)
    config = runtime_config(job, overrides or {})
    head = f"# RayJob of jobs/{name} for stack {stack}: submit with `kubectl create -f -`\n"
    return head + yaml.safe_dump(rayjob(job, cfg, config), sort_keys=False)


def write_jobs(jobs: list[RenderedJob], out: Path) -> int:
    """`gantry render`: each job's RayJob as `<out>/jobs/<name>.yaml`; returns how many."""
    folder = out / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    for j in jobs:
        (folder / f"{j.spec.name}.yaml").write_text(yaml.safe_dump(j.manifest, sort_keys=False))
    return len(jobs)

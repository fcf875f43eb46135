"""Every job can run: its pods land on their pools, and its queue can ever admit it.

Read from what teams submit (each job's RayJob, infra/jobs/rayjob.py) against what `pulumi up`
applies (the LocalQueues, ClusterQueues and ResourceFlavors of infra/addons/batch.py), as
Kueue and the scheduler would:

- KubeRay accepts its name (the job's folder);
- each pod group (head, workers) lands on the pool job.yaml puts it on (nodeSelector and
  tolerations) and fits one node of it (schedulability's rules);
- its team's queue covers that pool (a flavor whose node labels the pods select), and the job's
  requests there fit what the queue can ever hold on it: its nominal quota, plus, with
  borrowing, the rest of its cohort's (`queue_reach`). A bigger job is never admitted: it waits
  in its queue forever.

One line per problem, naming the job.yaml and the keys to change.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from gantry.jobs import head_pool
from gantry.pools import GPU_RESOURCE, pool_facts
from infra.addons.batch import QUEUE_LABEL
from infra.checks.schedulability import (
    QueueReach,
    Workload,
    format_amount,
    lands_on,
    pod_requests,
    pool_problems,
    queue_reach,
)
from infra.jobs.rayjob import MAX_RAYJOB_NAME, RenderedJob

# Kubernetes resource -> its key under job.yaml's head/workers and the teams file's jobs.quota.
_KEYS = {"cpu": "cpu", "memory": "memory_gib", GPU_RESOURCE: "gpus"}

Group = tuple[str, int, dict[str, Any]]  # job.yaml key (head | workers), pods, pod template spec


def pod_groups(rayjob: Mapping[str, Any]) -> list[Group]:
    """The head and each worker group of a RayJob (a worker group is named after its key)."""
    cluster = rayjob["spec"]["rayClusterSpec"]
    groups: list[Group] = [("head", 1, cluster["headGroupSpec"]["template"]["spec"])]
    for g in cluster.get("workerGroupSpecs") or []:
        groups.append((g["groupName"], int(g["replicas"]), g["template"]["spec"]))
    return groups


def _named(objects: Iterable[Mapping[str, Any]], kind: str) -> dict[tuple[str, str], Any]:
    return {
        (o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] == kind
    }


def _selects(flavor: Mapping[str, Any] | None, selector: Mapping[str, str]) -> bool:
    """Kueue's rule for a flavor a pod may take: its node labels agree with every label the
    pod's nodeSelector names."""
    labels = ((flavor or {}).get("spec") or {}).get("nodeLabels") or {}
    return flavor is not None and all(selector[k] == v for k, v in labels.items() if k in selector)


def job_problems(objects: Iterable[Mapping[str, Any]], jobs: Sequence[RenderedJob]) -> list[str]:
    """One line per job that cannot run as rendered (empty: every job can be admitted)."""
    objects = list(objects)
    local_queues = _named(objects, "LocalQueue")
    flavors = {name: o for (_, name), o in _named(objects, "ResourceFlavor").items()}
    queues = queue_reach(objects)
    problems: list[str] = []
    for job in jobs:
        meta, cfg = job.manifest["metadata"], job.cfg
        if len(meta["name"]) > MAX_RAYJOB_NAME or not meta["name"][0].isalpha():
            problems.append(
                f"{job.source}: KubeRay refuses the RayJob name {meta['name']!r} (the folder's): "
                f"at most {MAX_RAYJOB_NAME} characters, starting with a letter"
            )
        pools = pool_facts(cfg.pools)
        on = {"head": head_pool(cfg)}
        groups = pod_groups(job.manifest)
        for key, count, pod in groups:
            pool = pools[on.get(key, job.spec.pool)]
            if not lands_on(pod, pool):
                problems.append(
                    f"{job.source}: {key}: pods do not land on pool {pool.name} (nodeSelector "
                    f"{pod.get('nodeSelector') or {}}, tolerations {pod.get('tolerations') or []})"
                )
            group = Workload(
                kind="RayJob",
                name=meta["name"],
                namespace=meta["namespace"],
                service=f"{job.source}: {key}",
                pod=pod,
                annotations={},  # no sidecar (infra/jobs/rayjob.py)
                max_pods=count,
                canary=0,
                surge=0,
            )
            problems += map(str, pool_problems(group, pool, cfg.platform.time_slicing_replicas))
        lq = local_queues.get((meta["namespace"], meta.get("labels", {}).get(QUEUE_LABEL, "")))
        queue = queues.get(((lq or {}).get("spec") or {}).get("clusterQueue", ""))
        if queue is not None:  # a missing queue is the apply order's to name (apply_order.py)
            problems += _admission(job, groups, queue, flavors)
    return problems


def _admission(
    job: RenderedJob, groups: list[Group], queue: QueueReach, flavors: Mapping[str, Any]
) -> list[str]:
    """Why the job's queue can never admit it (empty: it can, once the queue has room)."""
    teams = [t.name for t in job.cfg.platform.teams.teams]
    team_key = (
        f"{job.cfg.platform.teams_file}: teams[{teams.index(job.spec.team)}] "
        f"({job.spec.team}).jobs.quota"
    )
    need: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    keys: dict[str, list[str]] = defaultdict(list)  # flavor -> the groups that land there
    problems = []
    for key, count, pod in groups:
        selector = pod.get("nodeSelector") or {}
        flavor = next((f for f in queue.nominal if _selects(flavors.get(f), selector)), None)
        if flavor is None:
            problems.append(
                f"{job.source}: {key}: team {job.spec.team}'s queue has no quota on the pool "
                f"its pods select ({selector}); add that pool to {team_key}"
            )
            continue
        for resource, amount in pod_requests(pod, {}).items():
            if resource in _KEYS:
                need[flavor][resource] += amount * count
        keys[flavor].append(key)
    for flavor, amounts in need.items():
        for resource, amount in amounts.items():
            nominal = queue.nominal[flavor].get(resource, Decimal(0))
            most = queue.most[flavor].get(resource, Decimal(0))
            if amount <= most:
                continue
            fields = " + ".join(
                f"head.{_KEYS[resource]}"
                if k == "head"
                else f"{k}.replicas x {k}.{_KEYS[resource]}"
                for k in keys[flavor]
            )
            borrowed = (
                f" + {format_amount(resource, most - nominal)} borrowed" if most > nominal else ""
            )
            problems.append(
                f"{job.source}: needs {format_amount(resource, amount)} on pool {flavor} "
                f"({fields}), more than team {job.spec.team}'s queue can ever admit there "
                f"({format_amount(resource, nominal)} nominal{borrowed}): it would wait forever; "
                f"lower {fields} or raise {team_key}.{flavor}.{_KEYS[resource]}"
            )
    return problems

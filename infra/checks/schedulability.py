"""Static schedulability: would every rendered pod find a node, and fit its namespace's quota?

A pure function over rendered objects (dicts, as `ResourceIndex.manifests()` returns them) and
the pool model (`PoolScheduling` by name). Run by the tests and by `gantry preview|up` before
anything is applied. For every pod template (Deployment, StatefulSet, DaemonSet, Job):

- some pool matches its nodeSelector and required node affinity,
- the pod tolerates every NoSchedule/NoExecute taint of that pool,
- one node of that pool has allocatable >= the pod's requests (containers + Istio sidecar, GPUs
  included; GPUs per node x time-slicing replicas).

For every namespace with a ResourceQuota (a team's): the quota covers, per service, its worst
case (`Workload.pods`, the rule in `workloads`) x pod requests, plus the most its admitted jobs
may hold (`job_quota_reach`: its ClusterQueue's nominal quota and what it may borrow). Each
problem is one line naming the service, the pool (or team) and the missing resource. Whether a
whole pool holds every service's worst case is the capacity check's job (infra/checks/capacity.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from gantry.pools import GPU_RESOURCE, PoolScheduling
from infra.addons.namespaces import NS_NAME_LABEL
from infra.serving.manifests import SERVICE_LABEL

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
_GIB = Decimal(1024**3)
# Istio's injector reads the sidecar's requests from these pod annotations.
_SIDECAR = {
    "cpu": "sidecar.istio.io/proxyCPU",
    "memory": "sidecar.istio.io/proxyMemory",
}
# Quota keys -> the request they bound ("pods" is counted separately).
_QUOTA_KEYS = {
    "requests.cpu": "cpu",
    "cpu": "cpu",
    "requests.memory": "memory",
    "memory": "memory",
    f"requests.{GPU_RESOURCE}": GPU_RESOURCE,
}
# Rendered quota keys -> the team's `quota` key in platform/teams.yaml (tenancy.quota_hard).
_TEAM_QUOTA_KEYS = {
    "requests.cpu": "cpu",
    "requests.memory": "memory_gib",
    "pods": "pods",
    f"requests.{GPU_RESOURCE}": "gpus",
}


@dataclass(frozen=True)
class Problem:
    service: str
    where: str  # "pool gpu", "namespace ml-serving", or "no pool"
    message: str

    def __str__(self) -> str:
        return f"{self.service}: {self.where}: {self.message}"


@dataclass(frozen=True)
class Workload:
    """One pod template and how many copies of it may exist at once."""

    kind: str
    name: str
    namespace: str
    service: str
    pod: dict[str, Any]  # the pod template's spec
    annotations: dict[str, str]
    max_pods: int
    canary: int  # pods of a Flagger canary beside the primary's max_pods
    surge: int  # extra pods of a rolling update
    min_pods: int = 1

    @property
    def pods(self) -> int:
        """The most pods of this template at once: max + canary + surge."""
        return self.max_pods + self.canary + self.surge

    @property
    def requests(self) -> dict[str, Decimal]:
        return pod_requests(self.pod, self.annotations)


def _q(value: Any) -> Decimal:
    return Decimal(parse_quantity(str(value)))


def pod_requests(pod: Mapping[str, Any], annotations: Mapping[str, str]) -> dict[str, Decimal]:
    """What the scheduler reserves for one pod: the sum of its containers' requests (limits where
    a request is missing, as the API server defaults them), the larger of that and any init
    container, plus the injected Istio sidecar (from its annotations)."""

    def of(container: Mapping[str, Any]) -> dict[str, Decimal]:
        res = container.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        return {k: _q(v) for k, v in merged.items()}

    total: dict[str, Decimal] = defaultdict(Decimal)
    for c in pod.get("containers") or []:
        for k, v in of(c).items():
            total[k] += v
    for c in pod.get("initContainers") or []:
        for k, v in of(c).items():
            total[k] = max(total[k], v)
    if annotations.get("sidecar.istio.io/inject", "true") != "false":
        for resource, key in _SIDECAR.items():
            if key in annotations:
                total[resource] += _q(annotations[key])
    return dict(total)


def _selector_matches(pod: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (pod.get("nodeSelector") or {}).items()):
        return False
    required = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    return not terms or any(term_matches(t, labels) for t in terms)


def term_matches(term: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Every `matchExpressions` entry holds (a node selector term, or a label selector's)."""
    for e in term.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(op, False)
        if not ok:
            return False
    return True


def _tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, str]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint["key"]:
                return True
        elif t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


# Taint effects that keep a pod without a matching toleration off the node.
_REPELLING = {"NoSchedule", "NoExecute"}


def lands_on(pod: Mapping[str, Any], pool: PoolScheduling) -> bool:
    """Whether a pod template may run on `pool`'s nodes: its nodeSelector and required node
    affinity match their labels and it tolerates their repelling taints (size aside)."""
    tolerations = pod.get("tolerations") or []
    return _selector_matches(pod, pool.node_labels) and all(
        _tolerates(tolerations, t) for t in pool.taints_k8s() if t["effect"] in _REPELLING
    )


def _num(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def format_amount(resource: str, amount: Decimal) -> str:
    if resource == "pods":
        return f"{_num(amount)} pods"
    if resource == "memory":
        return f"{amount / _GIB:.2f} GiB memory"
    if resource == "cpu":
        return f"{_num(amount)} CPU"
    return f"{_num(amount)} {resource}"


def pool_problems(w: Workload, pool: PoolScheduling, gpu_slices: int) -> list[Problem]:
    """Why `w` cannot run on `pool` (empty: it can)."""
    where = f"pool {pool.name}"
    problems = []
    tolerations = w.pod.get("tolerations") or []
    for taint in pool.taints_k8s():
        if taint["effect"] in _REPELLING and not _tolerates(tolerations, taint):
            shown = f"{taint['key']}={taint.get('value', '')}:{taint['effect']}"
            problems.append(Problem(w.service, where, f"does not tolerate taint {shown}"))
    allocatable = {
        "cpu": Decimal(str(pool.cpu)),
        "memory": Decimal(str(pool.memory_gib)) * _GIB,
        GPU_RESOURCE: Decimal(pool.gpus_per_node * gpu_slices),
    }
    for resource, need in sorted(w.requests.items()):
        have = allocatable.get(resource)
        if have is not None and need > have:
            problems.append(
                Problem(
                    w.service,
                    where,
                    f"pod needs {format_amount(resource, need)}, a node has "
                    f"{format_amount(resource, have)} allocatable "
                    f"(short {format_amount(resource, need - have)})",
                )
            )
    return problems


def workloads(objects: Iterable[Mapping[str, Any]]) -> list[Workload]:
    """Every pod template with its maximum pod count (HPA maxReplicas) and rollout surge."""
    objects = list(objects)

    def key(o: Mapping[str, Any]) -> tuple[str, str]:
        return o["metadata"].get("namespace", "default"), o["metadata"]["name"]

    hpas = {
        (key(o)[0], o["spec"]["scaleTargetRef"]["name"]): o["spec"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    canaried = {
        (key(o)[0], o["spec"]["targetRef"]["name"]) for o in objects if o["kind"] == "Canary"
    }
    found = []
    for o in objects:
        if o["kind"] not in WORKLOAD_KINDS:
            continue
        spec = o.get("spec") or {}
        template = spec.get("template") or {}
        meta = template.get("metadata") or {}
        hpa = hpas.get(key(o))
        replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        max_pods = int(hpa["maxReplicas"]) if hpa else replicas
        min_pods = int(hpa.get("minReplicas", 1)) if hpa else replicas
        # Flagger scales the canary from zero to one pod (ScaleFromZero) and its HPA to
        # minReplicas; it runs beside the primary until the primary is rolled out.
        canary = min_pods if key(o) in canaried else 0
        # Promotion rolls the primary with the Deployment's strategy (Flagger copies it) while
        # the canary still runs, so a canaried service needs its surge as well.
        surge = _surge(spec.get("strategy"), max_pods) if o["kind"] == "Deployment" else 0
        found.append(
            Workload(
                kind=o["kind"],
                name=o["metadata"]["name"],
                namespace=key(o)[0],
                service=(meta.get("labels") or {}).get(SERVICE_LABEL, o["metadata"]["name"]),
                pod=template.get("spec") or {},
                annotations=meta.get("annotations") or {},
                max_pods=max_pods,
                canary=canary,
                surge=surge,
                min_pods=min_pods,
            )
        )
    return found


def _surge(strategy: Mapping[str, Any] | None, replicas: int) -> int:
    """Extra pods a Deployment's rolling update adds at `replicas`: maxSurge (Kubernetes'
    default 25%; a percentage rounds up), none for Recreate."""
    strategy = strategy or {}
    if strategy.get("type") == "Recreate":
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(replicas * int(value[:-1]) / 100)
    return int(value)


def check(
    objects: Iterable[Mapping[str, Any]],
    pools: Mapping[str, PoolScheduling],
    gpu_slices: int = 1,
) -> list[str]:
    """One line per problem; empty when every pod can be placed and every quota suffices."""
    objects = list(objects)
    problems: list[Problem] = []
    works = [w for w in workloads(objects) if w.kind != "DaemonSet"]
    for w in works:
        candidates = [p for p in pools.values() if _selector_matches(w.pod, p.node_labels)]
        if not candidates:
            selector = w.pod.get("nodeSelector") or {}
            problems.append(
                Problem(
                    w.service,
                    "no pool",
                    f"no pool has node labels {selector} (pools: {', '.join(sorted(pools))})",
                )
            )
            continue
        per_pool = [pool_problems(w, p, gpu_slices) for p in candidates]
        if all(per_pool):
            problems += [p for found in per_pool for p in found]
    problems += _quota_problems(objects, works)
    return [str(p) for p in problems]


@dataclass(frozen=True)
class QueueReach:
    """A Kueue ClusterQueue's quota per flavor (pool) and resource (Kubernetes units): its own
    nominal quota, and the most its admitted jobs may hold (nominal + what it may borrow from
    the other queues of its cohort: all of their nominal quota unless a borrowingLimit caps it)."""

    namespace: str | None  # the one namespace it admits from (namespaceSelector), if that
    nominal: dict[str, dict[str, Decimal]]
    most: dict[str, dict[str, Decimal]]


def queue_reach(objects: Iterable[Mapping[str, Any]]) -> dict[str, QueueReach]:
    """Every ClusterQueue's reach, by name."""
    queues = {
        o["metadata"]["name"]: o.get("spec") or {} for o in objects if o["kind"] == "ClusterQueue"
    }

    def quotas(spec: Mapping[str, Any]) -> dict[str, dict[str, tuple[Decimal, Decimal | None]]]:
        out: dict[str, dict[str, tuple[Decimal, Decimal | None]]] = {}
        for group in spec.get("resourceGroups") or []:
            for flavor in group.get("flavors") or []:
                out[flavor["name"]] = {
                    r["name"]: (
                        _q(r["nominalQuota"]),
                        None if r.get("borrowingLimit") is None else _q(r["borrowingLimit"]),
                    )
                    for r in flavor.get("resources") or []
                }
        return out

    own = {name: quotas(spec) for name, spec in queues.items()}
    reach = {}
    for name, spec in queues.items():
        cohort = spec.get("cohortName")
        lenders = [
            own[other]
            for other, o in queues.items()
            if other != name and cohort and o.get("cohortName") == cohort
        ]
        nominal: dict[str, dict[str, Decimal]] = {}
        most: dict[str, dict[str, Decimal]] = {}
        for flavor, resources in own[name].items():
            for resource, (quota, limit) in resources.items():
                lendable = sum(
                    (q[flavor][resource][0] for q in lenders if resource in q.get(flavor, {})),
                    Decimal(0),
                )
                nominal.setdefault(flavor, {})[resource] = quota
                most.setdefault(flavor, {})[resource] = quota + (
                    lendable if limit is None else min(limit, lendable)
                )
        selector = (spec.get("namespaceSelector") or {}).get("matchLabels") or {}
        reach[name] = QueueReach(selector.get(NS_NAME_LABEL), nominal, most)
    return reach


def job_quota_reach(objects: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Decimal]]:
    """Per namespace, the most its admitted jobs may request at once, by resource."""
    out: dict[str, dict[str, Decimal]] = {}
    for q in queue_reach(objects).values():
        if q.namespace is None:
            continue
        total = out.setdefault(q.namespace, defaultdict(Decimal))
        for resources in q.most.values():
            for resource, amount in resources.items():
                total[resource] += amount
    return out


def _quota_problems(objects: list[Mapping[str, Any]], works: list[Workload]) -> list[Problem]:
    problems = []
    jobs = job_quota_reach(objects)
    for quota in (o for o in objects if o["kind"] == "ResourceQuota"):
        ns = quota["metadata"].get("namespace", "default")
        members = [w for w in works if w.namespace == ns]
        for quota_key, limit in sorted(((quota.get("spec") or {}).get("hard") or {}).items()):
            resource = "pods" if quota_key == "pods" else _QUOTA_KEYS.get(quota_key)
            if resource is None:
                continue

            def per_pod(w: Workload, resource: str = resource) -> Decimal:
                return Decimal(1) if resource == "pods" else w.requests.get(resource, Decimal(0))

            users = [w for w in members if per_pod(w)]
            # Admitted jobs' pods count against the namespace's quota too (not their number:
            # Kueue does not bound how many pods a queue's jobs have).
            held = jobs.get(ns, {}).get(resource, Decimal(0))
            need = sum((per_pod(w) * w.pods for w in users), held)
            have = _q(limit)
            if need <= have:
                continue
            parts = ", ".join(
                [
                    *(
                        f"{w.service} ({w.max_pods} max + {w.canary} canary + {w.surge} surge) "
                        f"x {format_amount(resource, per_pod(w))}"
                        for w in users
                    ),
                    *([f"jobs {format_amount(resource, held)} (jobs.quota)"] if held else []),
                ]
            )
            # A team's namespace has the team's name (infra/addons/tenancy.py).
            team_key = _TEAM_QUOTA_KEYS.get(quota_key)
            named = f" (quota.{team_key} in the teams file)" if team_key else ""
            who = sorted({w.service for w in users}) + (["jobs"] if held else [])
            problems.append(
                Problem(
                    ",".join(who),
                    f"team {ns}",
                    f"quota {quota_key}={limit}{named} is short by "
                    f"{format_amount(resource, need - have)} "
                    f"(needs {format_amount(resource, need)}: {parts})",
                )
            )
    return problems

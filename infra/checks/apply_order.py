"""Checks on the whole apply set: nothing created twice, and everything an object needs exists
before it is applied.

The rules, each a way a real `pulumi up` fails or stalls:
- one object, two creators: Helm refuses the second ("exists and cannot be imported").
- a custom resource before its CRD: Helm and Pulumi fail with "no matches for kind". Within one
  release only `crds/` counts: Helm maps every template's kind before creating any of them.
- a namespaced object before its namespace, a workload before its PriorityClass, ServiceAccount
  or (non-optional) ConfigMaps: rejected, or pods that never start.
- a pod asking for an extended resource (GPUs) before the add-on that advertises it: Pending.
- a pod before the PersistentVolumeClaim it mounts: Pending.
- Kueue: a job before the LocalQueue and WorkloadPriorityClass its labels name, a LocalQueue
  before its ClusterQueue, a ClusterQueue before its ResourceFlavors: rejected by Kueue's
  webhooks, or queues that admit nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from gantry.pools import GPU_RESOURCE
from infra.addons.batch import PRIORITY_LABEL, QUEUE_LABEL
from infra.checks.apply_set import ApplySet, Entry
from infra.checks.schemas import is_custom_resource
from infra.helm.kinds import group_kind

# Exist in every cluster before anything is applied.
BUILTIN = {
    "Namespace": {"default", "kube-system", "kube-public", "kube-node-lease"},
    "PriorityClass": {"system-node-critical", "system-cluster-critical"},
    "ServiceAccount": {"default"},
    "ConfigMap": {"kube-root-ca.crt"},
}
# Extended resources and the charts whose node agents advertise them.
RESOURCE_ADVERTISERS = {GPU_RESOURCE: ("nvidia-device-plugin", "fake-gpu-operator")}
WORKLOAD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
RAY_KINDS = {"RayJob", "RayCluster"}  # KubeRay: a Ray cluster's head and worker pod templates


def duplicates(objects: ApplySet) -> list[str]:
    seen: dict[tuple[str, str, str, str], Entry] = {}
    problems = []
    for e in objects:
        first = seen.setdefault(e.key, e)
        if first is not e:
            problems.append(f"{e.describe()}: created twice ({first.source}; {e.source})")
    return problems


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any] | None:
    spec = manifest.get("spec") or {}
    kind = manifest.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    if kind in WORKLOAD_KINDS:
        return (spec.get("template") or {}).get("spec") or {}
    return None


def pod_specs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod template of an object: a workload's one, a Ray cluster's head and workers'."""
    if manifest.get("kind") not in RAY_KINDS:
        spec = pod_spec(manifest)
        return [] if spec is None else [spec]
    body = manifest.get("spec") or {}
    cluster = body.get("rayClusterSpec") or {} if manifest["kind"] == "RayJob" else body
    groups = [cluster.get("headGroupSpec") or {}, *(cluster.get("workerGroupSpecs") or [])]
    return [(g.get("template") or {}).get("spec") or {} for g in groups]


def _kueue_references(manifest: dict[str, Any], ns: str) -> Iterator[tuple[str, str, str]]:
    """(kind, namespace, name) of the Kueue objects this one names and needs."""
    labels = (manifest.get("metadata") or {}).get("labels") or {}
    if QUEUE_LABEL in labels:
        yield "LocalQueue", ns, labels[QUEUE_LABEL]
    if PRIORITY_LABEL in labels:
        yield "WorkloadPriorityClass", "", labels[PRIORITY_LABEL]
    spec = manifest.get("spec") or {}
    if manifest.get("kind") == "LocalQueue":
        yield "ClusterQueue", "", spec["clusterQueue"]
    if manifest.get("kind") == "ClusterQueue":
        for group in spec.get("resourceGroups") or []:
            for flavor in group.get("flavors") or []:
                yield "ResourceFlavor", "", flavor["name"]


def _config_maps(spec: dict[str, Any]) -> Iterator[str]:
    """Names of the ConfigMaps a pod cannot start without (optional ones skipped)."""
    containers = [*spec.get("initContainers", []), *spec.get("containers", [])]
    refs: list[dict[str, Any]] = []
    for v in spec.get("volumes") or []:
        refs.append(v.get("configMap") or {})
        refs += [s.get("configMap") or {} for s in (v.get("projected") or {}).get("sources", [])]
    for c in containers:
        refs += [f.get("configMapRef") or {} for f in c.get("envFrom") or []]
        refs += [
            (e.get("valueFrom") or {}).get("configMapKeyRef") or {} for e in c.get("env") or []
        ]
    yield from (r["name"] for r in refs if r.get("name") and not r.get("optional"))


def _requests(spec: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        res = c.get("resources") or {}
        names |= set(res.get("limits") or {}) | set(res.get("requests") or {})
    return names


def missing_before(objects: ApplySet) -> list[str]:
    """One line per object applied before something it needs (or needing what nothing makes)."""
    by_key: dict[tuple[str, str, str], list[Entry]] = {}
    crds: dict[tuple[str, str], list[Entry]] = {}
    for e in objects:
        _, kind, ns, name = e.key
        by_key.setdefault((kind, ns, name), []).append(e)
        if kind == "CustomResourceDefinition":
            spec = e.manifest["spec"]
            crds.setdefault((spec["group"], spec["names"]["kind"]), []).append(e)

    problems: list[str] = []

    def need(
        consumer: Entry,
        what: str,
        providers: list[Entry],
        ok: Callable[[Entry, Entry], bool],
    ) -> None:
        if not providers:
            problems.append(f"{consumer.describe()} ({consumer.source}): needs {what}: none")
        elif not any(ok(p, consumer) for p in providers):
            made_by = ", ".join(sorted({p.source for p in providers}))
            problems.append(
                f"{consumer.describe()} ({consumer.source}): needs {what} ({made_by}), "
                f"but {consumer.owner_name} does not depend on it"
            )

    def need_object(consumer: Entry, kind: str, ns: str, name: str) -> None:
        if name in BUILTIN.get(kind, set()):
            return
        need(
            consumer,
            f"{kind} {ns + '/' if ns else ''}{name}",
            by_key.get((kind, ns, name), []),
            objects.exists_before,
        )

    def pod_needs(e: Entry, spec: dict[str, Any], ns: str) -> None:
        if spec.get("priorityClassName"):
            need_object(e, "PriorityClass", "", spec["priorityClassName"])
        need_object(e, "ServiceAccount", ns, spec.get("serviceAccountName") or "default")
        for cm in sorted(set(_config_maps(spec))):
            need_object(e, "ConfigMap", ns, cm)
        for volume in spec.get("volumes") or []:
            if claim := (volume.get("persistentVolumeClaim") or {}).get("claimName"):
                need_object(e, "PersistentVolumeClaim", ns, claim)
        for resource, charts in RESOURCE_ADVERTISERS.items():
            if resource in _requests(spec):
                advertisers = [
                    a
                    for a in objects
                    if a.owner in objects.releases
                    and objects.releases[a.owner].inputs.pinned.name in charts
                    and a.manifest.get("kind") == "DaemonSet"
                ]
                need(e, f"a {resource} device plugin", advertisers, objects.exists_before)

    for e in objects:
        group, kind = group_kind(e.manifest)
        ns = e.key[2]
        if is_custom_resource(e.manifest):
            need(
                e,
                f"the CRD of {kind}.{group}",
                crds.get((group, kind), []),
                # In one release only crds/ is installed before the templates are mapped.
                lambda p, c: (
                    objects.exists_before(p, c) and (p.owner != c.owner or p.stage == "crds")
                ),
            )
        if ns and objects.namespaced(e):
            need_object(e, "Namespace", "", ns)
        for ref in _kueue_references(e.manifest, ns):
            need_object(e, *ref)
        for spec in pod_specs(e.manifest):
            pod_needs(e, spec, ns)
    return problems


def release_namespaces(objects: ApplySet) -> list[str]:
    """Each release's own namespace exists before it (Pulumi's Release does not create it)."""
    problems = []
    namespaces = {e.key[3]: e for e in objects if e.key[1] == "Namespace"}
    for urn, rel in objects.releases.items():
        ns = rel.inputs.namespace
        if ns in BUILTIN["Namespace"]:
            continue
        made = namespaces.get(ns)
        if made is None or not objects.owner_depends_on(urn, made.owner):
            problems.append(f"release {rel.inputs.name}: namespace {ns} is not created before it")
    return problems

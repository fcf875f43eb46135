"""Every ServiceMonitor/PodMonitor in the apply set scrapes something, and Prometheus loads it.

Checked on rendered objects, as the operator would evaluate them: the monitor's labels and
namespace pass the Prometheus resource's selectors; its `matchLabels` select at least one Service
(pod template, for a PodMonitor) in the watched namespaces that has the named port; its
`jobLabel` is a label the selected objects carry. Monitors whose selector uses matchExpressions
select pods by labels added at admission (Istio's injector): those are checked for the
Prometheus side only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from infra.checks.apply_order import pod_spec
from infra.checks.apply_set import ApplySet
from infra.checks.schedulability import term_matches

MONITOR_KINDS = {"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor"}
# Services that exist without being applied: the API server's own, and the kubelet Service that
# prometheus-operator maintains (kube-prometheus-stack's `kubelet-service` flag). Their labels
# and ports as the API server and the operator create them.
CLUSTER_SERVICES: list[dict[str, Any]] = [
    {
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {"ports": [{"name": "https", "port": 443}]},
    },
    {
        "kind": "Service",
        "metadata": {
            "name": "kps-kubelet",
            "namespace": "kube-system",
            "labels": {"app.kubernetes.io/name": "kubelet", "k8s-app": "kubelet"},
        },
        "spec": {"ports": [{"name": n} for n in ("https-metrics", "http-metrics", "cadvisor")]},
    },
]


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels + matchExpressions); None selects nothing, {} everything."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return term_matches(selector, labels)


def _namespace_ok(selector: Mapping[str, Any] | None, ns: str, own: str) -> bool:
    """A monitor's namespaceSelector: {any: true}, matchNames, or (absent) its own namespace."""
    selector = selector or {}
    return bool(selector.get("any")) or ns in (selector.get("matchNames") or [own])


def _targets(objects: ApplySet, kind: str) -> Iterator[tuple[str, dict[str, str], set[str | None]]]:
    """(namespace, labels, port names) of Services, or of pod templates for a PodMonitor."""
    for m in [*(e.manifest for e in objects), *CLUSTER_SERVICES]:
        ns = (m.get("metadata") or {}).get("namespace") or ""
        if kind == "ServiceMonitor" and m.get("kind") == "Service":
            ports = {p.get("name") for p in (m.get("spec") or {}).get("ports", [])}
            yield ns, (m["metadata"].get("labels") or {}), ports
        elif kind == "PodMonitor" and (spec := pod_spec(m)) is not None:
            tmpl = (m.get("spec") or {}).get("template") or {}
            labels = (tmpl.get("metadata") or {}).get("labels") or {}
            ports = {p.get("name") for c in spec.get("containers", []) for p in c.get("ports", [])}
            yield ns, labels, ports


def monitor_problems(objects: ApplySet) -> list[str]:
    problems: list[str] = []
    prometheuses = [e for e in objects if e.manifest.get("kind") == "Prometheus"]
    ns_labels = {
        e.key[3]: (e.manifest["metadata"].get("labels") or {})
        for e in objects
        if e.key[1] == "Namespace"
    }
    for e in objects:
        kind = e.manifest.get("kind")
        if kind not in MONITOR_KINDS:
            continue
        spec = e.manifest.get("spec") or {}
        meta = e.manifest["metadata"]
        field = MONITOR_KINDS[kind]
        ns = e.key[2]
        loaded = any(
            _selects((p.manifest["spec"] or {}).get(f"{field}Selector"), meta.get("labels") or {})
            and _selects(
                (p.manifest["spec"] or {}).get(f"{field}NamespaceSelector"),
                {"kubernetes.io/metadata.name": ns, **ns_labels.get(ns, {})},
            )
            for p in prometheuses
        )
        if not loaded:
            problems.append(f"{e.describe()} ({e.source}): no Prometheus selects it")
        selector = spec.get("selector") or {}
        job = spec.get("jobLabel")
        exprs = selector.get("matchExpressions") or []
        required = set(selector.get("matchLabels") or {})
        required |= {x["key"] for x in exprs if x["operator"] in {"In", "Exists"}}
        if exprs:
            # Gantry's own monitors only: a chart's jobLabel (grafana's) is its maintainers' call.
            if e.stage == "object" and job and job not in required:
                problems.append(f"{e.describe()} ({e.source}): jobLabel {job!r} is not selected on")
            continue
        endpoints = spec.get("endpoints") or spec.get("podMetricsEndpoints") or []
        ports = {ep.get("port") for ep in endpoints if ep.get("port")}
        hits = [
            labels
            for target_ns, labels, names in _targets(objects, kind)
            if _namespace_ok(spec.get("namespaceSelector"), target_ns, ns)
            and _selects(selector, labels)
            and ports <= names
        ]
        if not hits:
            target = "Service" if kind == "ServiceMonitor" else "pod"
            problems.append(
                f"{e.describe()} ({e.source}): selects no {target} with labels "
                f"{selector.get('matchLabels')} and port(s) {sorted(ports)}"
            )
        if e.stage == "object" and job and not all(job in labels for labels in hits):
            problems.append(f"{e.describe()} ({e.source}): jobLabel {job!r} is not on its targets")
    return problems

"""Namespaces the platform creates, each with Pod Security Standards labels.

Every namespace says which PSS level it enforces; system namespaces that run node agents
(hostPath, privileged device plugins, node-exporter) need `privileged`, and warn/audit stay at
`restricted` everywhere so that anything weaker is visible.
"""

from __future__ import annotations

from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

PssLevel = Literal["privileged", "baseline", "restricted"]
PSS_PREFIX = "pod-security.kubernetes.io"
# Istio's sidecar injector: pods in a namespace with this label get an Envoy sidecar.
INJECTION_LABEL = "istio-injection"
NS_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
# On every team namespace (value: the team): what Kueue's webhooks and queues select by.
TEAM_LABEL = "gantry.dev/team"


def pss_labels(level: PssLevel) -> dict[str, str]:
    return {
        f"{PSS_PREFIX}/enforce": level,
        f"{PSS_PREFIX}/enforce-version": "latest",
        f"{PSS_PREFIX}/warn": "restricted",
        f"{PSS_PREFIX}/audit": "restricted",
    }


def namespace(
    name: str,
    level: PssLevel,
    opts: pulumi.ResourceOptions,
    injection: bool = False,
    labels: dict[str, str] | None = None,
) -> k8s.core.v1.Namespace:
    all_labels = {**pss_labels(level), **(labels or {})}
    if injection:
        all_labels[INJECTION_LABEL] = "enabled"
    return k8s.core.v1.Namespace(
        f"ns-{name}",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, labels=all_labels),
        opts=opts,
    )

"""Which kinds are namespaced, and the parts of an apiVersion.

Core kinds: Kubernetes' cluster-scoped kinds are listed (every other core kind is namespaced).
Custom resources: the scope their CustomResourceDefinition declares; an unknown one is taken as
namespaced, as most are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Cluster-scoped kinds of the Kubernetes API (kubectl api-resources --namespaced=false).
CLUSTER_SCOPED_CORE = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "APIService",
        "PriorityClass",
        "StorageClass",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "RuntimeClass",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "CertificateSigningRequest",
        "FlowSchema",
        "PriorityLevelConfiguration",
        "DeviceClass",
        "ResourceSlice",
        "PodSecurityPolicy",
    }
)

GroupKind = tuple[str, str]


def group_version(obj: Mapping[str, Any]) -> tuple[str, str]:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    return group, version


def group_kind(obj: Mapping[str, Any]) -> GroupKind:
    return group_version(obj)[0], str(obj.get("kind"))


def crd_scopes(crds: Iterable[Mapping[str, Any]]) -> dict[GroupKind, bool]:
    """(group, kind) -> namespaced, from CustomResourceDefinitions."""
    return {
        (c["spec"]["group"], c["spec"]["names"]["kind"]): c["spec"].get("scope") != "Cluster"
        for c in crds
        if c.get("kind") == "CustomResourceDefinition"
    }


def is_namespaced(obj: Mapping[str, Any], scopes: Mapping[GroupKind, bool] | None = None) -> bool:
    key = group_kind(obj)
    if scopes and key in scopes:
        return scopes[key]
    return key[1] not in CLUSTER_SCOPED_CORE

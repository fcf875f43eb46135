"""Schema validation: core kinds with kubernetes-validate (strict), custom resources by jsonschema.

Strict mode rejects fields the API does not define (a typo such as `spec.replica` would
otherwise be dropped silently by the API server). A custom resource is validated against the
CRD that the apply set itself installs (the exact pinned version) where there is one, else
against the JSON schemas folder (`crd_schema_dir()`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

from gantry import project
from infra.helm.kinds import group_version

CRD_SCHEMAS_ENV = "GANTRY_CRD_SCHEMAS"

# API groups served by Kubernetes itself (kubernetes-validate knows their schemas).
_CORE_GROUPS = {
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "certificates.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "resource.k8s.io",
}


def crd_schema_dir() -> Path | None:
    """The CRD JSON schema folder, or None where it is absent."""
    path = Path(os.environ.get(CRD_SCHEMAS_ENV) or project.root().parent / "shared" / "crd-schemas")
    return path if path.is_dir() else None


def is_custom_resource(manifest: dict[str, Any]) -> bool:
    return group_version(manifest)[0] not in _CORE_GROUPS


def describe(manifest: dict[str, Any]) -> str:
    meta = manifest.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{manifest.get('kind')} {ns}{meta.get('name')}"


@cache
def _schema(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


CrdSchemas = dict[tuple[str, str, str], dict[str, Any]]  # (group, version, kind) -> schema


def crd_schemas(crds: Iterable[dict[str, Any]]) -> CrdSchemas:
    """The openAPIV3Schema of every served version of each CustomResourceDefinition."""
    out: CrdSchemas = {}
    for crd in crds:
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for v in spec.get("versions") or []:
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            if schema and v.get("served", True):
                out[(spec["group"], v["name"], spec["names"]["kind"])] = schema
    return out


def validate_custom_resource(
    manifest: dict[str, Any], schema_dir: Path | None, crds: CrdSchemas | None = None
) -> list[str]:
    group, version = group_version(manifest)
    schema = (crds or {}).get((group, version, str(manifest.get("kind"))))
    if schema is None:
        if schema_dir is None:
            return [f"{describe(manifest)}: no CRD schema folder (set {CRD_SCHEMAS_ENV})"]
        path = schema_dir / group / f"{str(manifest.get('kind')).lower()}_{version}.json"
        if not path.exists():
            where = path.relative_to(schema_dir)
            return [f"{describe(manifest)}: no schema {where} in {schema_dir}"]
        schema = _schema(path)
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{describe(manifest)}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    ]


def validate_objects(
    manifests: Iterable[dict[str, Any]],
    k8s_version: str,
    schema_dir: Path | None = None,
    custom_resources: bool = True,
    crds: CrdSchemas | None = None,
) -> list[str]:
    """One line per problem. Core kinds: kubernetes-validate strict for `k8s_version` ("1.33").
    Custom resources (when `custom_resources`): jsonschema against `crds` (from CRDs in the same
    apply set), else `schema_dir` (default `crd_schema_dir()`); a missing schema is a problem."""
    problems: list[str] = []
    schema_dir = schema_dir or crd_schema_dir()
    for m in manifests:
        if is_custom_resource(m):
            if custom_resources:
                problems += validate_custom_resource(m, schema_dir, crds)
            continue
        try:
            kubernetes_validate.validate(m, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = ".".join(map(str, err.path)) or "<root>"
            problems.append(f"{describe(m)}: {where}: {err.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as err:
            problems.append(f"{describe(m)}: {err}")
    return problems

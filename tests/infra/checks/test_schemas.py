"""Every rendered object validates: core kinds strictly against the stack's Kubernetes version,
custom resources against the CRD JSON schemas (skipped, with a reason, where they are absent)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.checks import crd_schema_dir, is_custom_resource, validate_objects
from infra.render import ResourceIndex
from tests.conftest import STACKS, stack_config

Program = Callable[[str], ResourceIndex]
needs_schemas = pytest.mark.skipif(
    crd_schema_dir() is None,
    reason="no CRD schema folder (GANTRY_CRD_SCHEMAS or ../shared/crd-schemas): make crd-schemas",
)


@pytest.mark.parametrize("stack", STACKS)
def test_platform_core_objects_are_valid(program: Program, stack: str) -> None:
    manifests = program(stack).manifests("platform")
    version = stack_config(stack).cluster.kubernetes_version
    assert validate_objects(manifests, version, custom_resources=False) == []


@needs_schemas
@pytest.mark.parametrize("stack", STACKS)
def test_platform_custom_resources_match_their_crd_schemas(program: Program, stack: str) -> None:
    manifests = [m for m in program(stack).manifests("platform") if is_custom_resource(m)]
    assert {m["kind"] for m in manifests} >= {"PeerAuthentication", "Gateway", "PrometheusRule"}
    assert validate_objects(manifests, stack_config(stack).cluster.kubernetes_version) == []


def test_strict_validation_catches_an_unknown_field() -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "q", "namespace": "team"},
        "spec": {"hardd": {"pods": "1"}},
    }
    (problem,) = validate_objects([quota], "1.33")
    assert "ResourceQuota team/q" in problem and "hardd" in problem


def test_wrong_types_are_caught() -> None:
    pc = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": "p"},
        "value": "high",
    }
    assert validate_objects([pc], "1.31")


@needs_schemas
def test_custom_resource_errors_name_the_field() -> None:
    pa = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "istio-system"},
        "spec": {"mtls": {"mode": "STRICTLY"}},
    }
    (problem,) = validate_objects([pa], "1.33")
    assert "spec.mtls.mode" in problem


def test_missing_schema_folder_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cr = {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": "c"}}
    (problem,) = validate_objects([cr], "1.33", schema_dir=tmp_path)
    assert "no schema flagger.app/canary_v1beta1.json" in problem

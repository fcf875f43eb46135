"""Offline validation of rendered Kubernetes objects, shared by every layer's tests and the CLI.

    problems = validate_objects(manifests, "1.33")   # core kinds + custom resources
    problems = run_checkov(render_dir)               # checkov's Kubernetes checks, minus skips

Both return a list of one-line problems (empty: all good). Custom resources are validated
against the JSON schemas in `crd_schema_dir()` (env GANTRY_CRD_SCHEMAS, default
../shared/crd-schemas beside the repo); `None` there means the folder is absent (a fork): fetch
it with `make crd-schemas`.
"""

from infra.checks.checkov import CheckovUnavailable, checkov_binary, load_skip_list, run_checkov
from infra.checks.schemas import (
    crd_schema_dir,
    is_custom_resource,
    validate_custom_resource,
    validate_objects,
)

__all__ = [
    "CheckovUnavailable",
    "checkov_binary",
    "crd_schema_dir",
    "is_custom_resource",
    "load_skip_list",
    "run_checkov",
    "validate_custom_resource",
    "validate_objects",
]

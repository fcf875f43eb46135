"""`gantry schema service`: the JSON schema of service.yaml, for editors and linters.

It is generated from `ServiceSpec`, so it must accept the shipped files, reject what the loader
rejects by key (a typo, a wrong type), and document every field.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gantry.service import ServiceSpecError, load_service

REPO = Path(__file__).resolve().parents[2]
GANTRY = Path(sys.executable).parent / "gantry"
SERVICE_FILES = sorted((REPO / "services").glob("*/service.yaml"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """What the real CLI prints (a narrow terminal: the JSON must not be wrapped)."""
    env = {**os.environ, "COLUMNS": "40", "NO_COLOR": "1"}
    result = subprocess.run(
        [str(GANTRY), "schema", "service"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


def _errors(schema: dict[str, Any], doc: Any) -> list[jsonschema.ValidationError]:
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))


def test_the_schema_is_a_valid_json_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "Gantry service.yaml"
    # Resolved by the loader, never written in the file.
    assert "directory" not in schema["properties"] and "serve_config" not in schema["properties"]
    assert "name" not in schema["required"]


def test_services_are_shipped() -> None:
    assert {p.parent.name for p in SERVICE_FILES} >= {"embedder", "classifier"}


@pytest.mark.parametrize("path", SERVICE_FILES, ids=lambda p: p.parent.name)
def test_shipped_service_files_validate(schema: dict[str, Any], path: Path) -> None:
    errors = _errors(schema, yaml.safe_load(path.read_text()))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def _classifier() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "services" / "classifier" / "service.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_a_typo_is_rejected_naming_the_key(
    schema: dict[str, Any], services_dir: Callable[..., Path]
) -> None:
    doc = _classifier()
    doc["autoscaling"]["targt_in_flight"] = 3
    errors = _errors(schema, doc)
    assert len(errors) == 1
    assert list(errors[0].absolute_path) == ["autoscaling"]
    assert "'targt_in_flight' was unexpected" in errors[0].message
    # The loader agrees.
    with pytest.raises(ServiceSpecError, match=r"autoscaling\.targt_in_flight: unknown key"):
        load_service("svc", None, services_dir("svc", autoscaling__targt_in_flight=3))


def test_a_wrong_type_is_rejected_naming_the_key(
    schema: dict[str, Any], services_dir: Callable[..., Path]
) -> None:
    doc = _classifier()
    doc["autoscaling"]["max_replicas"] = "three"
    errors = _errors(schema, doc)
    assert len(errors) == 1
    assert list(errors[0].absolute_path) == ["autoscaling", "max_replicas"]
    assert "is not of type 'integer'" in errors[0].message
    with pytest.raises(ServiceSpecError, match=r"autoscaling\.max_replicas: "):
        load_service("svc", None, services_dir("svc", autoscaling__max_replicas="three"))


def test_what_the_loader_accepts_the_schema_accepts(
    schema: dict[str, Any], services_dir: Callable[..., Path]
) -> None:
    """Spellings the loader takes besides the shipped ones: a bare integer duration (seconds)
    and an omitted `name` (the folder's)."""
    changes = {"canary__interval": 30, "canary__webhooks__load__timeout": 15}
    spec = load_service("svc", None, services_dir("svc", **changes))
    assert spec.canary.interval_s == 30
    doc = _classifier()
    doc["canary"]["interval"] = 30
    doc["canary"]["webhooks"]["load"]["timeout"] = 15
    doc.pop("name", None)
    assert not _errors(schema, doc)


def _properties(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(JSON path, schema) of every property declared anywhere in `node`."""
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            yield f"{where}.{name}", prop
        for key, value in node.items():
            yield from _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _properties(value, f"{where}[{i}]")


def test_every_field_is_documented(schema: dict[str, Any]) -> None:
    properties = list(_properties(schema))
    assert len(properties) > 50  # the walk reaches the nested models
    undocumented = [where for where, prop in properties if not prop.get("description")]
    assert not undocumented, f"fields without a description: {undocumented}"
    # Every model (a $defs entry) says what it is, too.
    models = {name: d.get("description") for name, d in schema["$defs"].items()}
    assert all(models.values()), [name for name, doc in models.items() if not doc]

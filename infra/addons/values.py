"""Helm values: `platform/<addon>/values.yaml`, the provider's overlay, then computed values.

Overlays are `values-<provider>.yaml` next to the base file (kind, eks, existing); they are deep
merged (mappings merge key by key, anything else is replaced). Computed values are only those
that come from other resources or config (service URLs, storage class, pool topology).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gantry import project
from gantry.validation import deep_merge


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: Helm values must be a mapping")
    return data


def addon_values(
    addon: str,
    provider_kind: str,
    computed: Mapping[str, Any] | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """The values a release of `addon` gets on a cluster made by `provider_kind`."""
    root = root or project.platform_dir()
    base = root / addon / "values.yaml"
    if not base.exists():
        raise FileNotFoundError(f"{base} is missing: every add-on keeps its values there")
    values = deep_merge(_read(base), _read(root / addon / f"values-{provider_kind}.yaml"))
    return deep_merge(values, computed or {})

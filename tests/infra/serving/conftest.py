"""Helpers for serving-layer tests: a throwaway services folder built from a shipped service."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.serving.spec import SERVICES_DIR


@pytest.fixture
def services_dir(tmp_path: Path) -> Callable[..., Path]:
    """`make(name, like="classifier", **changes)`: a services folder holding one service copied
    from a shipped one, its service.yaml deep-updated with `changes` (dotted keys allowed)."""
    root = tmp_path / "services"

    def make(name: str, like: str = "classifier", **changes: Any) -> Path:
        target = root / name
        target.mkdir(parents=True)
        for f in ("service.yaml", "serve.yaml"):
            shutil.copy(SERVICES_DIR / like / f, target / f)
        doc = yaml.safe_load((target / "service.yaml").read_text())
        for dotted, value in changes.items():
            *path, last = dotted.split("__")
            node = doc
            for part in path:
                node = node.setdefault(part, {})
            node[last] = value
        (target / "service.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        return root

    return make

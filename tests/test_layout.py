"""The repo layout rules that keep imports working."""

from __future__ import annotations

import platform
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_platform_is_the_stdlib_module() -> None:
    # A `platform` package in the repo would shadow this and break ray, pulumi and locust.
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(platform.__file__).resolve().parent == stdlib
    assert platform.python_implementation()  # the real module's API


def test_platform_folder_holds_data_only() -> None:
    assert not sorted((REPO / "platform").rglob("*.py"))
    assert not (REPO / "platform" / "__init__.py").exists()


def test_python_packages_are_the_documented_ones() -> None:
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    # `tests` is a package only so that test modules import as `tests.services.…` and never
    # shadow the real `services` package; it is not installed (pyproject's packages.find).
    assert packages == {"gantry", "infra", "sandbox", "services", "loadtests", "tests"}

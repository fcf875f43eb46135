"""The locks agree with pyproject.toml, and every image installs what the lock pins.

`make lock` writes requirements/dev.lock (what `make venv` installs), requirements/gantry.lock (the
base install) and services/*/requirements*.txt (each image's) with uv, which this test does not
run (it resolves over the network): it checks what was written, so a pin changed in one place
only, or a requirements file edited by hand, fails here until `make lock` is rerun.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEV_LOCK = REPO / "requirements" / "dev.lock"
BASE_LOCK = REPO / "requirements" / "gantry.lock"
IMAGE_FILES = [
    *sorted((REPO / "services").glob("*/requirements*.txt")),
    REPO / "jobs" / "requirements.txt",
]
# What the base install (`gantry up` / `gantry render`) must not pull in.
ENGINES = {"torch", "onnxruntime", "ray", "sentence-transformers", "locust", "gevent"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """{package: (version, sha256s)} of a `uv pip compile --generate-hashes` file."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        name, sep, version = words[0].partition("==")
        assert sep, f"{path.name}: {words[0]} is not pinned with =="
        hashes = frozenset(w.removeprefix("--hash=sha256:") for w in words[1:])
        assert all(w.startswith("--hash=sha256:") for w in words[1:]), f"{path.name}: {line}"
        pins[norm(name)] = (version, hashes)
    return pins


def declared() -> dict[str, list[str]]:
    """pyproject.toml's requirements by group ("" = the base), the self-reference left out."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    return {g: [r for r in reqs if not r.startswith("gantry[")] for g, reqs in groups.items()}


def split(requirement: str) -> tuple[str, str]:
    """("ray", "2.60.0") from "ray[serve]==2.60.0"; version "" when not pinned."""
    name, _, version = requirement.partition("==")
    return norm(name.split("[")[0].strip()), version.strip()


def public(version: str) -> str:
    return version.split("+")[0]  # 2.13.0+cpu satisfies ==2.13.0 (PEP 440 local version)


def test_every_locked_package_has_a_hash() -> None:
    for path in (DEV_LOCK, BASE_LOCK, *IMAGE_FILES):
        pins = read_pins(path)
        assert pins, f"{path} is empty"
        unhashed = [name for name, (_, hashes) in pins.items() if not hashes]
        assert not unhashed, f"{path.relative_to(REPO)}: no --hash for {unhashed}"


def test_lock_has_every_pyproject_pin() -> None:
    lock = read_pins(DEV_LOCK)
    for group, reqs in declared().items():
        for req in reqs:
            name, version = split(req)
            assert name in lock, f"[{group or 'project'}] {req} is not in the lock: run make lock"
            if version:
                locked = public(lock[name][0])
                assert locked == version, f"{req} but the lock has {locked}: run make lock"


def test_torch_is_locked_as_the_cpu_build() -> None:
    version, _ = read_pins(DEV_LOCK)["torch"]
    assert version.endswith("+cpu"), f"torch=={version}: the lock must pin the CPU build"
    assert not any(name.startswith("nvidia-") for name in read_pins(DEV_LOCK))


def test_base_lock_is_the_base_install_from_dev_lock() -> None:
    base, dev = read_pins(BASE_LOCK), read_pins(DEV_LOCK)
    for req in declared()[""]:
        assert split(req)[0] in base, f"{req} is not in {BASE_LOCK.name}"
    for name, pin in base.items():
        assert dev.get(name) == pin, f"{BASE_LOCK.name}: {name} differs from {DEV_LOCK.name}"
    assert not ENGINES & base.keys(), f"the base install pulls {ENGINES & base.keys()}"


@pytest.mark.parametrize("path", IMAGE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_image_requirements_are_generated_from_the_lock(path: Path) -> None:
    dev = read_pins(DEV_LOCK)
    pins = read_pins(path)
    for name, (version, hashes) in pins.items():
        # The CUDA image's onnxruntime-gpu stands in for onnxruntime, at the same version.
        locked = dev.get(name) or dev.get(name.removesuffix("-gpu"))
        assert locked, f"{path.name}: {name} is not in the lock"
        assert version == locked[0], f"{path.name}: {name}=={version}, lock {locked[0]}"
        if name in dev:
            assert hashes == locked[1], f"{path.name}: {name}'s hashes differ from the lock's"
    inputs = path.with_suffix(".in")
    for line in inputs.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert split(line)[0] in pins, f"{inputs.name}: {line} missing from {path.name}"


def test_gantry_and_infra_need_only_the_base_install() -> None:
    """`gantry up` / `gantry render` run on requirements/gantry.lock alone: every module of gantry/
    and infra/ imports with the packages only the extras bring (torch, ray, locust...) blocked."""
    base = set(read_pins(BASE_LOCK))
    extras_only = set(read_pins(DEV_LOCK)) - base
    blocked = sorted(
        module
        for module, dists in packages_distributions().items()
        if {norm(d) for d in dists} & extras_only and not {norm(d) for d in dists} & base
    )
    assert {"torch", "ray", "onnxruntime", "locust"} <= set(blocked)
    code = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys

        class NotInTheBaseInstall:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in {set(blocked)!r}:
                    raise ImportError(name + " comes only with an extra")

        sys.meta_path.insert(0, NotInTheBaseInstall())
        import gantry, infra
        for package in (gantry, infra):
            for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                if module.name != "infra.__main__":  # the Pulumi program itself: runs at import
                    importlib.import_module(module.name)
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]

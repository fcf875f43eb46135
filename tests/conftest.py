"""Shared fixtures. `program(stack)` runs the whole Pulumi program offline for a stack file."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry import project
from gantry.stack import GantryConfig, load_stack_file
from infra.render import ResourceIndex, run_offline, write_render

REPO = Path(__file__).resolve().parents[1]
STACKS = ("sandbox", "eks")


def stack_config(stack: str) -> GantryConfig:
    return load_stack_file(REPO / f"Pulumi.{stack}.yaml")


_cache: dict[str, ResourceIndex] = {}


@pytest.fixture
def program() -> Callable[[str], ResourceIndex]:
    """Run the whole program for `Pulumi.<stack>.yaml` under mocks (cached per stack)."""

    def run(stack: str) -> ResourceIndex:
        if stack not in _cache:
            _cache[stack] = run_offline(stack_config(stack), stack)
        return _cache[stack]

    return run


_rendered: dict[str, Path] = {}


@pytest.fixture
def rendered(
    program: Callable[[str], ResourceIndex], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """`gantry render`'s output folder for a stack (objects per layer, releases.yaml, index, and
    each release's objects under releases/ where the chart archives are here)."""
    from infra.helm.archives import missing_charts

    def render(stack: str) -> Path:
        if stack not in _rendered:
            out = tmp_path_factory.mktemp(f"render-{stack}")
            write_render(program(stack), out)
            if not missing_charts():
                from infra.helm.output import write_releases

                objects, _ = _check(program, stack)
                write_releases(list(objects.releases.values()), out)
            _rendered[stack] = out
        return _rendered[stack]

    return render


@pytest.fixture
def run_config() -> Callable[[GantryConfig, str], ResourceIndex]:
    """Run the whole program for an in-memory config (for variations of a stack)."""
    return lambda cfg, stack="test": run_offline(cfg, stack)


def needs_charts() -> None:
    """Skip (one line: how to get them) where the pinned chart archives are not on this machine."""
    from infra.helm.archives import missing_charts

    missing = missing_charts()
    if missing:
        pytest.skip(f"{len(missing)} pinned chart archive(s) missing: {missing[0]}")


_checked: dict[str, tuple[Any, list[str]]] = {}


@pytest.fixture
def apply_set(program: Callable[[str], ResourceIndex]) -> Callable[[str], tuple[Any, list[str]]]:
    """(ApplySet, problems) of a stack: every release rendered by real Helm, all checks run."""
    needs_charts()
    return lambda stack: _check(program, stack)


def _check(program: Callable[[str], ResourceIndex], stack: str) -> tuple[Any, list[str]]:
    from infra.checks.offline import check_apply_set

    if stack not in _checked:
        version = stack_config(stack).cluster.kubernetes_version
        _checked[stack] = check_apply_set(program(stack), version)
    return _checked[stack]


@pytest.fixture
def preflight_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[GantryConfig, str], str]:
    """`run(cfg, stack)`: `gantry preview`'s checks on `cfg` must stop with exit 2 (before Pulumi
    runs); returns what they printed on stderr."""

    def run(cfg: GantryConfig, stack: str) -> str:
        import typer

        from infra import preflight as pf

        monkeypatch.setattr(pf, "load_stack", lambda _: cfg)
        with pytest.raises(typer.Exit) as exit_:
            pf.preflight(stack, "preview")
        assert exit_.value.exit_code == 2
        return capsys.readouterr().err

    return run


@pytest.fixture
def services_dir(tmp_path: Path) -> Callable[..., Path]:
    """`make(name, like="classifier", **changes)`: a services folder holding one service copied
    from a shipped one, its service.yaml deep-updated with `changes` (dotted keys allowed)."""
    root = tmp_path / "services"

    def make(name: str, like: str = "classifier", **changes: Any) -> Path:
        target = root / name
        target.mkdir(parents=True)
        for f in ("service.yaml", "serve.yaml"):
            shutil.copy(project.services_dir() / like / f, target / f)
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


@pytest.fixture(scope="session")
def e2e_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real sandbox (both services, short timings) for every end-to-end test of the session:
    tests/sandbox/e2e_sandbox.py. Started on first use, stopped at the end of the session."""
    from tests.sandbox.e2e_sandbox import new_sandbox

    sb = new_sandbox(tmp_path_factory.mktemp("e2e-sandbox"))
    try:
        sb.up()
        yield sb
    finally:
        sb.down()

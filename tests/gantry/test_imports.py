"""The import rules of the layout (docs/architecture.md), checked on the code itself.

- The core (`gantry`) loads no engine: importing any of it, or running `gantry --help`, leaves
  Pulumi, Ray, torch and Locust out of `sys.modules` (measured in a fresh interpreter).
- No import cycles between first-party modules.
- Layering: the core imports no engine package; `infra` and `sandbox` never import each other;
  `loadtests` imports neither; `services` (shipped in its own image) imports none of the rest.

The graph is read with `ast` from every `import` and `from ... import` (module level, inside
functions and under `if TYPE_CHECKING:` alike: each is a dependency of the code), so it also
sees the imports a lazy command makes only when it runs.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("gantry", "infra", "sandbox", "loadtests", "services", "jobs")
# Heavy engines and tools the core must never load.
ENGINES = ("pulumi", "ray", "torch", "locust")


def _is_engine(module: str) -> bool:
    # `pulumi_aws`, `pulumi_kubernetes`... count as Pulumi.
    return any(module == e or module.startswith((f"{e}.", f"{e}_")) for e in ENGINES)


def _core_modules() -> list[str]:
    found = (f"gantry.{p.stem}" for p in (REPO / "gantry").glob("*.py") if p.stem != "__init__")
    return ["gantry", *sorted(found)]


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


# Imports each module named in argv in turn and prints, as JSON, which engine modules each one
# was the first to load.
_IMPORT_EACH = """
import importlib, json, sys
engines = {}
for name in sys.argv[1:]:
    before = set(sys.modules)
    importlib.import_module(name)
    engines[name] = sorted(set(sys.modules) - before)
print(json.dumps(engines))
"""


def test_core_modules_load_no_engine() -> None:
    modules = _core_modules()
    assert "gantry.cli" in modules and "gantry.service" in modules  # discovery works
    result = _run(_IMPORT_EACH, *modules)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    offenders = {
        name: sorted(m for m in new if _is_engine(m) and "." not in m)
        for name, new in loaded.items()
    }
    offenders = {name: engines for name, engines in offenders.items() if engines}
    assert not offenders, f"importing these core modules first loaded an engine: {offenders}"


# `gantry --help` as the console script runs it; prints the modules it loaded, as JSON, on fd 3.
_HELP = """
import json, os, sys
sys.argv = ["gantry", "--help"]
from gantry.cli import main
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
with os.fdopen(3, "w") as out:
    json.dump(sorted(sys.modules), out)
"""


def test_gantry_help_loads_no_engine(tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    with out.open("w") as fd3:
        result = subprocess.run(
            [sys.executable, "-c", f"import os; os.dup2({fd3.fileno()}, 3)\n{_HELP}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            pass_fds=(fd3.fileno(),),
        )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    loaded = [m for m in json.loads(out.read_text()) if _is_engine(m) and "." not in m]
    assert not loaded, f"`gantry --help` loaded {loaded}"


# ---------------------------------------------------------------- the import graph


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # path:line of the import statement


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    """Every first-party module, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[_module_name(path)] = path
    return found


def _known(name: str) -> str | None:
    """The deepest first-party module `name` is or lies in (`infra.x.CONST` -> `infra.x`)."""
    modules = _modules()
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of everything `path` imports; `from a import b` is `a.b` when that is a
    module, else `a`."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")
                if not is_package:
                    package.pop()
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in _modules() else base), node.lineno


@cache
def _edges() -> tuple[Edge, ...]:
    """First-party import edges. Importing `a.b.c` runs the packages `a` and `a.b` first, so
    it points at them too, except at those the importer lies in: they are loaded already."""
    edges = set()
    for module, path in _modules().items():
        where = f"{path.relative_to(REPO)}"
        for name, line in _imported(module, path):
            target = _known(name)
            if target is None:
                continue
            own = {module, *_ancestors(module)}
            for t in [*_ancestors(target), target]:
                if t not in own or t == target != module:
                    edges.add(Edge(module, t, f"{where}:{line}"))
    # One edge per (source, target): the first line that makes it.
    first: dict[tuple[str, str], Edge] = {}
    for e in sorted(edges, key=lambda e: (e.source, e.target, _line(e.where))):
        first.setdefault((e.source, e.target), e)
    return tuple(first.values())


def _line(where: str) -> int:
    return int(where.rsplit(":", 1)[1])


def _graph() -> dict[str, dict[str, Edge]]:
    graph: dict[str, dict[str, Edge]] = {m: {} for m in _modules()}
    for e in _edges():
        graph[e.source][e.target] = e
    return graph


def _strongly_connected(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on a deep graph)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _cycle_through(start: str, members: set[str], graph: dict[str, dict[str, Edge]]) -> list[Edge]:
    """A shortest cycle from `start` back to itself inside one component (BFS)."""
    came_from: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ, edge in sorted(graph[node].items()):
                if succ not in members:
                    continue
                if succ == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came_from[path[0].source])
                    return path
                if succ not in came_from:
                    came_from[succ] = edge
                    following.append(succ)
        frontier = following
    raise AssertionError(f"{start} is in no cycle of {sorted(members)}")


def import_cycles() -> list[str]:
    """One line per cycle: `a -> b (a.py:3) -> a (b.py:7)`, one per component and start."""
    graph = _graph()
    found = []
    for component in _strongly_connected(graph):
        members = set(component)
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        seen: set[tuple[str, ...]] = set()
        for start in component:
            cycle = _cycle_through(start, members, graph)
            key = tuple(sorted(e.source for e in cycle))
            if key in seen:
                continue
            seen.add(key)
            hops = " -> ".join(f"{e.target} ({e.where})" for e in cycle)
            found.append(f"{cycle[0].source} -> {hops}")
    return found


def test_the_graph_sees_every_package() -> None:
    tops = {m.split(".")[0] for m in _modules()}
    assert tops == set(PACKAGES)
    targets = {e.target for e in _edges()}
    # A direct check of the resolution rules on lines known to exist.
    assert "gantry.service" in targets and "gantry.errors" in targets


def test_no_import_cycles() -> None:
    cycles = import_cycles()
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(cycles)


def test_cycle_finder_finds_a_cycle() -> None:
    """The checker itself: a three-module cycle and a self-import are found, a chain is not."""
    graph = {
        "a": {"b": Edge("a", "b", "a.py:1")},
        "b": {"c": Edge("b", "c", "b.py:1")},
        "c": {"a": Edge("c", "a", "c.py:1")},
        "d": {"a": Edge("d", "a", "d.py:1"), "d": Edge("d", "d", "d.py:2")},
    }
    components = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert components == [["a", "b", "c"]]
    assert [e.target for e in _cycle_through("a", {"a", "b", "c"}, graph)] == ["b", "c", "a"]


# ---------------------------------------------------------------- layering

# (who, what it must not import, why)
LAYERS = [
    ("gantry", ("infra", "sandbox", "loadtests", "services"), "the core imports no engine"),
    ("infra", ("sandbox",), "infra and sandbox are peers"),
    ("sandbox", ("infra",), "infra and sandbox are peers"),
    ("loadtests", ("infra", "sandbox"), "the load tests observe either engine through the core"),
    (
        "services",
        ("gantry", "infra", "sandbox", "loadtests"),
        "services ship in their own image, without the platform",
    ),
    (
        "jobs",
        ("infra", "sandbox", "loadtests"),
        "jobs run on either engine, reading only the core's JobRuntime",
    ),
]
# The composition root: registers the engines' commands (each loads its engine lazily).
COMPOSITION_ROOT = "gantry.cli"


@pytest.mark.parametrize(
    ("layer", "forbidden", "why"), LAYERS, ids=[f"{w}-{'-'.join(f)}" for w, f, _ in LAYERS]
)
def test_layering(layer: str, forbidden: tuple[str, ...], why: str) -> None:
    violations = sorted(
        f"{e.where}: {e.source} imports {e.target}"
        for e in _edges()
        if e.source.split(".")[0] == layer
        and e.source != COMPOSITION_ROOT
        and e.target.split(".")[0] in forbidden
    )
    assert not violations, f"{why}:\n" + "\n".join(violations)

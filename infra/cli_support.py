"""What every `gantry` command shares: the console, exit codes, prerequisite checks, stack loading.

Conventions (all commands):
- exit 0: done; exit 1: the operation ran and failed (e.g. a Pulumi update error);
  exit 2: the user must fix something first (bad config, missing tool); never a traceback.
- `fail(msg, hint)` prints `error: msg` (+ a hint line) on stderr and exits (2 by default).
- `require_binary("kind", ...)` returns the binary's path or fails with install instructions.
- `project_dir()` / `state_dir()` / `load_stack(stack)` find the Gantry project, its `.gantry/`
  state folder and a validated stack config.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from infra.config import GantryConfig

EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and failed
EXIT_USAGE = 2  # fix something first: bad config, missing prerequisite

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(message: str, hint: str | None = None, code: int = EXIT_USAGE) -> NoReturn:
    """Print `error: message` (and an indented hint) to stderr; exit with `code`."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    if hint:
        err_console.print(f"  {hint}", soft_wrap=True)
    raise typer.Exit(code)


def require_binary(name: str, why: str, hint: str) -> str:
    """The path of `name` on PATH, or exit 2 saying why it is needed and how to get it."""
    path = shutil.which(name)
    if path is None:
        fail(f"`{name}` is not installed (not on PATH); {why}.", hint)
    return path


def command_ok(argv: list[str], timeout_s: float = 20) -> bool:
    """Whether `argv` exits 0 within `timeout_s` (output discarded), e.g. `docker info`."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout_s).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def step(message: str) -> Iterator[None]:
    """A spinner while a long step runs, then a check mark."""
    with err_console.status(message):
        yield
    err_console.print(f"[green]✓[/] {message}")


def project_dir() -> Path:
    """The Gantry project: the nearest folder upward from the cwd holding Pulumi.yaml,
    else the checkout this package was installed from (editable install)."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    here = Path(__file__).resolve().parents[1]
    if (here / "Pulumi.yaml").is_file():
        return here
    fail("no Pulumi.yaml here or above: run gantry inside a Gantry checkout.")


def state_dir() -> Path:
    """`.gantry/` in the project (git-ignored): Pulumi's file backend, sandbox data, reports."""
    path = project_dir() / ".gantry"
    path.mkdir(exist_ok=True)
    return path


def stack_file(stack: str) -> Path:
    return project_dir() / f"Pulumi.{stack}.yaml"


def load_stack(stack: str, path: Path | None = None) -> GantryConfig:
    """The validated config of `Pulumi.<stack>.yaml` (or `path`); a bad one exits 2, one line."""
    from infra.config import ConfigError, load_stack_file

    try:
        return load_stack_file(path or stack_file(stack))
    except ConfigError as err:
        fail(str(err))

"""What every `gantry` command shares: the console, prerequisite checks, stack loading.

Conventions (all commands; exit codes in gantry/errors.py):
- exit 0: done; exit 1: the operation ran and failed (e.g. a Pulumi update error);
  exit 2: the user must fix something first (bad config, missing tool); never a traceback.
- `fail(msg, hint)` prints `error: msg` (+ a hint line) on stderr and exits (2 by default);
  `report(err)` does the same for a `GantryError`, with its own exit code.
- `require_binary("kind", ...)` returns the binary's path or fails with install instructions.
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

from gantry import project
from gantry.errors import EXIT_USAGE, GantryError

if TYPE_CHECKING:
    from gantry.stack import GantryConfig


console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_error(message: str, hint: str | None = None) -> None:
    """`error: message` (and an indented hint) on stderr."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    if hint:
        err_console.print(f"  {hint}", soft_wrap=True)


def fail(message: str, hint: str | None = None, code: int = EXIT_USAGE) -> NoReturn:
    """Print `error: message` (and an indented hint) to stderr; exit with `code`."""
    print_error(message, hint)
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


def report(err: GantryError) -> NoReturn:
    """Print an expected failure (and its hint) and exit with its code: never a traceback."""
    fail(str(err), err.hint, err.exit_code)


def load_stack(stack: str, path: Path | None = None) -> GantryConfig:
    """The validated config of `Pulumi.<stack>.yaml` (or `path`); a bad one exits 2, one line."""
    from gantry.stack import load_stack_file

    try:
        return load_stack_file(path or project.stack_file(stack))
    except GantryError as err:
        report(err)

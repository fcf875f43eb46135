"""The docs a fork reads must not rot: links resolve and every `gantry` command shown parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gantry.cli import app

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# [text](target) — skipping images' alt text is unnecessary: images must resolve too.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# `gantry ...` at the start of a shell line or inline code span.
COMMAND = re.compile(r"(?:^|`|\$ )(gantry(?: [^`\n#|&;]*)?)", re.M)


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+://|^mailto:|^#", target):
            continue
        path = target.split("#", 1)[0]
        if path and not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: broken relative links {broken}"


def _commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for cmd in COMMAND.findall(doc.read_text()):
            found.append((str(doc.relative_to(REPO)), cmd.strip()))
    return found


def _subcommand_path(words: list[str]) -> list[str]:
    """The leading words of a command line that name (nested) subcommands of `gantry`."""
    cmd: Any = typer.main.get_command(app)
    path: list[str] = []
    for word in words:
        # Duck-typed: typer 0.29 vendors click, so its groups are not `click.Group` instances.
        commands = getattr(cmd, "commands", None)
        if not isinstance(commands, dict) or word not in commands:
            break
        cmd = commands[word]
        path.append(word)
    return path


def test_docs_show_gantry_commands() -> None:
    assert _commands(), "the docs show no `gantry` command at all"


@pytest.mark.parametrize("where,line", _commands())
def test_documented_command_parses(where: str, line: str) -> None:
    words = shlex.split(line)[1:]
    path = _subcommand_path(words)
    if words and not words[0].startswith("-"):
        assert path, f"{where}: `{line}` names no gantry subcommand"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, (
        f"{where}: `gantry {' '.join(path)} --help` failed: {result.output}"
    )
    # Options shown in the docs must exist on that subcommand.
    shown = {w.split("=", 1)[0] for w in words[len(path) :] if w.startswith("--")}
    unknown = sorted(o for o in shown if o not in result.output)
    assert not unknown, f"{where}: `{line}` uses options that `--help` does not list: {unknown}"

"""The one error type every expected failure raises, and the exit codes the CLI maps it to.

An expected failure (bad config, a missing tool, a rollout that cannot start) is a `GantryError`:
one line for the user, an optional hint saying what to do, and the exit code the `gantry` CLI
returns for it. Never a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and failed (a Pulumi update error, a rolled-back canary)
EXIT_USAGE = 2  # fix something first: a bad config, a missing prerequisite


class GantryError(Exception):
    """An expected failure: `message` is one line, `hint` says what to do about it."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(GantryError, ValueError):
    """Configuration Gantry cannot use (stack, teams, service, scenario): names the key."""

    exit_code = EXIT_USAGE


class PrerequisiteError(GantryError):
    """Something the command needs is missing here (a binary, the chart archives, Docker)."""

    exit_code = EXIT_USAGE

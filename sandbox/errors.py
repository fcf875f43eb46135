"""The sandbox's expected failures: one line (and an optional hint) for the user."""

from __future__ import annotations

from gantry.errors import GantryError


class SandboxError(GantryError):
    """The sandbox cannot do what was asked: not running, a Serve app failed, a timeout."""

"""The sandbox's expected failures: one line (and an optional hint) for the user."""

from __future__ import annotations

from gantry.errors import GantryError


class SandboxError(GantryError):
    """The sandbox cannot do what was asked: not running, a Serve app failed, a timeout."""


class Unavailable(SandboxError):
    """A control-plane API kept failing transiently for a retry policy's whole budget
    (sandbox/retry.py): a wait with a longer deadline may still see it come back."""

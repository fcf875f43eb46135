"""The one Gantry project a command works on, and where its parts live inside it.

Every path (stack files, `platform/`, `services/`, `.gantry/`) is resolved from `root()`, so a
`gantry` run from a second checkout reads everything from that checkout, never a mix of two.
"""

from __future__ import annotations

from pathlib import Path

from gantry.errors import ConfigError

_INSTALLED = Path(__file__).resolve().parents[1]


def root() -> Path:
    """The nearest folder upward from the cwd holding Pulumi.yaml, else the checkout this
    package was installed from (an editable install)."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    if (_INSTALLED / "Pulumi.yaml").is_file():
        return _INSTALLED
    raise ConfigError(
        "no Pulumi.yaml here or above", "run gantry inside a Gantry checkout (or a fork of one)"
    )


def stack_file(stack: str) -> Path:
    return root() / f"Pulumi.{stack}.yaml"


def platform_dir() -> Path:
    """Helm values, dashboards, alert rules and `teams.yaml`: data only."""
    return root() / "platform"


def rules_dir() -> Path:
    """Alert rules: PrometheusRules on a cluster; the sandbox's Prometheus loads the same files."""
    return platform_dir() / "observability" / "rules"


def services_dir() -> Path:
    return root() / "services"


def state_dir() -> Path:
    """`.gantry/` (git-ignored): Pulumi's file backend, sandbox data, reports."""
    path = root() / ".gantry"
    path.mkdir(exist_ok=True)
    return path


def shown(path: Path) -> str:
    """`path` relative to the project when inside it (for messages), else as given."""
    try:
        return str(path.relative_to(root()))
    except (ValueError, ConfigError):
        return str(path)

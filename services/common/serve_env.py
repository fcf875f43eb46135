"""Ray Serve's data-plane settings (`serve.env` beside this file) as a dict, for the processes
that start Ray: the sandbox and the benchmarks (the container's entrypoint sources the file)."""

from __future__ import annotations

from pathlib import Path

SERVE_ENV_FILE = Path(__file__).with_name("serve.env")


def serve_env(path: Path = SERVE_ENV_FILE) -> dict[str, str]:
    """`KEY=VALUE` lines; blank lines and `#` comments skipped."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        env[key] = value
    return env

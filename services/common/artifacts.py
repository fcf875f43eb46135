"""Where a service's build artifacts live, and building one exactly once.

Images build artifacts at image build time (`RUN python -m services.<name>.<build script>`).
A dev checkout, the sandbox and the tests have no image build, so a replica that finds its
artifact missing builds it at first start, under a file lock so concurrent replicas build it once.
Builds are offline and deterministic.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[1]


def artifact_dir(service: str) -> Path:
    """`$GANTRY_ARTIFACT_DIR/<service>` if set, else `services/<service>/artifacts`."""
    root = os.environ.get("GANTRY_ARTIFACT_DIR")
    return Path(root) / service if root else SERVICES / service / "artifacts"


def ensure_artifact(path: Path, build: Callable[[Path], None]) -> Path:
    """Return `path`, first calling `build(tmp_path)` and renaming it into place if missing."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            build(tmp)
            os.replace(tmp, path)
    return path

"""A venv with exactly a service image's packages, for benchmarks that size the pod.

The dev venv holds more than an image does (pandas and pyarrow for the jobs, among others), and
Ray Serve imports pandas in every one of its processes when it is installed (~40 MiB each), so a
pod run from the dev venv overstates the image's memory. This venv is installed from the
service's `requirements.txt` (what its Dockerfile installs, sha256-checked) with uv, under
.gantry/bench/, and reused while that file is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")
# Where the Dockerfile gets torch's +cpu wheel; used when it answers (else pip's find-links).
TORCH_INDEX = os.environ.get("TORCH_INDEX", "https://download.pytorch.org/whl/cpu")


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=10)
    except OSError:
        return False
    return True


def image_venv(service: str) -> Path:
    """The bin directory of a venv holding services/<service>/requirements.txt."""
    requirements = REPO / "services" / service / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    venv = REPO / ".gantry" / "bench" / f"image-venv-{service}"
    stamp = venv / ".requirements-sha256"
    if stamp.is_file() and stamp.read_text() == digest:
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)
    print(f"installing {requirements.relative_to(REPO)} into {venv.relative_to(REPO)} ...")
    subprocess.run([UV, "venv", "-q", "-p", sys.executable, venv], check=True)
    sources = [f"--find-links={d}" for d in os.environ.get("PIP_FIND_LINKS", "").split() if d]
    if TORCH_INDEX and _reachable(f"{TORCH_INDEX}/"):
        sources.append(f"--extra-index-url={TORCH_INDEX}")
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "-q",
            "-p",
            venv / "bin" / "python",
            "--require-hashes",
            *sources,
            "-r",
            requirements,
        ],
        check=True,
    )
    stamp.write_text(digest)
    return venv / "bin"

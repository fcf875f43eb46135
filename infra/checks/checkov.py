"""checkov's Kubernetes checks over rendered YAML, from checkov's own venv (.venv-checkov).

checkov pins dependencies that conflict with the main venv (it downgrades `packaging`), so it
runs as a separate process from `make checkov-venv`'s environment. Checks listed in
platform/checkov-skip.yaml (each with a one-line justification) are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from infra.config import REPO_ROOT

CHECKOV_VENV = REPO_ROOT / ".venv-checkov"
SKIP_FILE = REPO_ROOT / "platform" / "checkov-skip.yaml"
CHECKOV_TIMEOUT_S = 600


class CheckovUnavailable(RuntimeError):
    """checkov is not installed (run `make checkov-venv`)."""


def checkov_binary() -> Path:
    found = CHECKOV_VENV / "bin" / "checkov"
    if found.exists():
        return found
    on_path = shutil.which("checkov")
    if on_path:
        return Path(on_path)
    raise CheckovUnavailable(f"{found} is missing: run `make checkov-venv`")


def load_skip_list(path: Path = SKIP_FILE) -> dict[str, str]:
    """Check id -> justification. Every entry needs a non-empty one-line justification."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must map check ids to justifications")
    for check, why in data.items():
        if not isinstance(why, str) or not why.strip() or "\n" in why.strip():
            raise ValueError(f"{path}: {check}: needs a one-line justification")
    return {str(k): str(v).strip() for k, v in data.items()}


def _json_documents(text: str) -> list[dict[str, Any]]:
    """checkov prints one JSON report (or a list of them) per directory, back to back."""
    decoder = json.JSONDecoder()
    docs: list[dict[str, Any]] = []
    pos = 0
    while pos < len(text):
        doc, pos = decoder.raw_decode(text, pos)
        docs += doc if isinstance(doc, list) else [doc]
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return docs


def run_checkov(*directories: Path, skip: dict[str, str] | None = None) -> list[str]:
    """Failed checks over every YAML file under `directories` (one checkov run), one line each."""
    if len(directories) != 1:
        # checkov scans only the first of several --directory arguments: gather them in one.
        with tempfile.TemporaryDirectory(prefix="gantry-checkov-") as tmp:
            for i, d in enumerate(directories):
                shutil.copytree(d, Path(tmp) / f"{i}-{d.name}")
            return run_checkov(Path(tmp), skip=skip)
    skip = load_skip_list() if skip is None else skip
    cmd = [
        str(checkov_binary()),
        "--directory",
        str(directories[0]),
        "--framework",
        "kubernetes",
        "--output",
        "json",
        "--quiet",  # failed checks only
        "--compact",
        "--skip-download",  # offline: no policy bundle from the platform
    ]
    if skip:
        cmd += ["--skip-check", ",".join(sorted(skip))]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=CHECKOV_TIMEOUT_S, env=env, check=False
    )
    # Exit 1 means "some checks failed"; anything else non-zero is checkov itself failing.
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"checkov failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = proc.stdout.strip()
    if not out:
        return []
    reports = _json_documents(out)
    problems = []
    for report in reports:
        for failed in (report.get("results") or {}).get("failed_checks", []):
            problems.append(
                f"{failed['check_id']} {failed['check_name']}: {failed.get('resource')} "
                f"({failed.get('file_path', '')})"
            )
    return sorted(set(problems))

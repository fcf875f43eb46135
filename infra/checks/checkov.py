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

from gantry import project
from gantry.errors import PrerequisiteError

CHECKOV_TIMEOUT_S = 600


class CheckovUnavailable(PrerequisiteError):
    """checkov is not installed (run `make checkov-venv`)."""


def checkov_binary() -> Path:
    found = project.root() / ".venv-checkov" / "bin" / "checkov"
    if found.exists():
        return found
    on_path = shutil.which("checkov")
    if on_path:
        return Path(on_path)
    raise CheckovUnavailable(f"{found} is missing: run `make checkov-venv`")


def load_skip_list(path: Path | None = None) -> dict[str, str]:
    """Check id -> justification. Every entry needs a non-empty one-line justification."""
    path = path or project.platform_dir() / "checkov-skip.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must map check ids to justifications")
    for check, why in data.items():
        if not isinstance(why, str) or not why.strip() or "\n" in why.strip():
            raise ValueError(f"{path}: {check}: needs a one-line justification")
    return {str(k): str(v).strip() for k, v in data.items()}


def load_chart_skips(path: Path | None = None) -> dict[str, dict[str, str]]:
    """Release -> {check id -> justification}, from `check: {why, releases}` entries."""
    path = path or project.platform_dir() / "checkov-skip-charts.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    skips: dict[str, dict[str, str]] = {}
    for check, entry in data.items():
        why = (entry or {}).get("why") if isinstance(entry, dict) else None
        releases = (entry or {}).get("releases") if isinstance(entry, dict) else None
        if not isinstance(why, str) or not why.strip() or "\n" in why.strip():
            raise ValueError(f"{path}: {check}: needs a one-line `why`")
        if not isinstance(releases, list) or not releases:
            raise ValueError(f"{path}: {check}: needs `releases`, the releases it applies to")
        for release in releases:
            skips.setdefault(str(release), {})[str(check)] = why.strip()
    return skips


def release_of(problem: str) -> str | None:
    """The release whose object failed (`.../releases/<release>/...` in the file path)."""
    path = problem.rsplit("(", 1)[-1]
    parts = path.split("/")
    return parts[parts.index("releases") + 1] if "releases" in parts[:-1] else None


def unjustified(
    problems: list[str], skips: dict[str, dict[str, str]]
) -> tuple[list[str], list[str]]:
    """(failures no skip covers, `check release` skips that matched no failure: stale)."""
    used: set[tuple[str, str]] = set()
    left = []
    for p in problems:
        check, release = p.split(" ", 1)[0], release_of(p)
        if release is not None and check in skips.get(release, {}):
            used.add((release, check))
        else:
            left.append(p)
    stale = [f"{c} {r}" for r, checks in skips.items() for c in checks if (r, c) not in used]
    return left, sorted(stale)


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

"""The sandbox's Prometheus: a real server on loopback, scraping Ray through its discovery file.

Ray's head rewrites every node's metrics endpoint (head and autoscaled pool nodes alike) every
5 s into `<session dir>/prom_metrics_service_discovery.json`, by an atomic rename; Prometheus reads
it with `file_sd_configs`. That is the only scrape job: adding Ray's port statically as well would
scrape each target twice and double every `sum`. Data stays under the sandbox's state dir.

The file must be the one in the session dir: `<ray temp dir>/prom_metrics_service_discovery.json`
is only a symlink to it, and Prometheus watches the folder of the path it is given, where a
rewrite behind the link raises no event. Prometheus then re-read it only every 5 minutes, so a
node the autoscaler added (a canary's replica) stayed unscraped for minutes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import requests
import yaml

from gantry import project
from sandbox import retry
from sandbox.raycluster import LOOPBACK

INSTALL_HINT = "install it: sudo apt-get install -y prometheus   (or put a `prometheus` on PATH)"
DISCOVERY_FILE = "prom_metrics_service_discovery.json"

# Alert rules shared with the cluster; only those over metrics the sandbox has (Ray's) load.
_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "le", "inf", "nan",
}  # fmt: skip


def binary() -> str | None:
    return shutil.which("prometheus")


def discovery_file(ray_temp_dir: Path) -> Path:
    """Where Ray's head writes the discovery file: its session dir (session_latest resolved,
    so that Prometheus watches the folder the file is really renamed into)."""
    return (ray_temp_dir / "session_latest").resolve() / DISCOVERY_FILE


def config(discovery: Path, scrape_interval_s: float, rule_files: list[Path]) -> dict[str, Any]:
    interval = f"{max(1, round(scrape_interval_s))}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "ray",
                # Re-read on every change (watched) and, should an event be missed, this often.
                "file_sd_configs": [{"files": [str(discovery)], "refresh_interval": interval}],
            }
        ],
    }


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label matchers/lists, durations or strings."""
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        is_call = text[m.end() :].lstrip().startswith("(")
        if not is_call and m.group().lower() not in _PROMQL_WORDS:
            names.add(m.group())
    return names


def sandbox_rules(rules_dir: Path | None = None) -> dict[str, Any]:
    """The cluster's alert rules whose every metric Ray exports (`ray_*`), as one rules file."""
    groups = []
    for path in sorted((rules_dir or project.rules_dir()).glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text()) or {}
        # Plain Prometheus rule files or PrometheusRule objects (spec.groups).
        for group in (doc.get("spec") or doc).get("groups") or []:
            rules = [
                r
                for r in group.get("rules") or []
                if all(n.startswith("ray_") for n in _metric_names(str(r.get("expr", ""))))
            ]
            if rules:
                groups.append({**group, "rules": rules})
    return {"groups": groups}


def argv(binary_path: str, config_file: Path, data_dir: Path, port: int) -> list[str]:
    return [
        binary_path,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--log.level=warn",
    ]


def wait_ready(url: str, timeout_s: float) -> None:
    """Until Prometheus says it is ready (503 while it starts)."""

    def ready() -> bool:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200

    retry.until(ready, timeout_s, f"Prometheus at {url} was not ready", 0.3)


class PromQL:
    """Instant queries against the sandbox's Prometheus, retried by `policy` (sandbox/retry.py)."""

    def __init__(self, url: str, policy: retry.Policy = retry.CALL) -> None:
        self._url = f"{url}/api/v1/query"
        self._policy = policy

    def scalar(self, query: str) -> float | None:
        """The single value of `query`, or None when it has no data (or NaN). Raises
        `Unavailable` when Prometheus failed for the whole policy, HTTPError on a 4xx (a bad
        query: Prometheus' reason in its body)."""

        def get() -> requests.Response:
            r = requests.get(self._url, params={"query": query}, timeout=10)
            r.raise_for_status()
            return r

        answer = retry.call(get, f"Prometheus ({self._url})", self._policy)
        result = answer.json()["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if value != value else value  # NaN: no requests in the window

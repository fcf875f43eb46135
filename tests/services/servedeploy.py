"""Deploy services' serve.yaml files onto a test Ray with `serve run`, as the container does.

The test process never becomes a Ray driver: `serve run --non-blocking` (a subprocess with the
loopback environment) submits a config derived from each service's serve.yaml, with test
overrides (names, route prefixes, args, replica counts, 127.0.0.1 and a free port).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.services.raylocal import LOOPBACK_ENV, VENV_BIN

SERVICES = Path(__file__).resolve().parents[2] / "services"


def load_serve_yaml(service: str) -> dict[str, Any]:
    return yaml.safe_load((SERVICES / service / "serve.yaml").read_text())


def app_from_serve_yaml(
    service: str,
    *,
    name: str,
    route_prefix: str,
    args: dict[str, Any] | None = None,
    deployment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The service's application block with test overrides (name, route, args, deployment)."""
    (app,) = load_serve_yaml(service)["applications"]
    app = {**app, "name": name, "route_prefix": route_prefix}
    app["args"] = {**app.get("args", {}), **(args or {})}
    app["deployments"] = [{**d, **(deployment or {})} for d in app["deployments"]]
    return app


def serve_run(
    address: str, apps: list[dict[str, Any]], http_port: int, workdir: Path, timeout_s: float = 120
) -> Path:
    """Write a Serve config for `apps` (top level from the embedder's serve.yaml) and submit it."""
    top = load_serve_yaml("embedder")
    config = {
        **{k: v for k, v in top.items() if k != "applications"},
        "http_options": {**top["http_options"], "host": "127.0.0.1", "port": http_port},
        "applications": apps,
    }
    path = workdir / "serve-test.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run(
        [str(VENV_BIN / "serve"), "run", "--non-blocking", "-a", address, str(path)],
        env={**os.environ, **LOOPBACK_ENV},
        check=True,
        capture_output=True,
        timeout=timeout_s,
    )
    return path


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            r = requests.get(url, timeout=5)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(1)
    raise TimeoutError(f"{url} not ready after {timeout_s}s: {last}")

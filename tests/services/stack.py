"""The session's Serve stack: a private Ray plus the services deployed from serve.yaml.

Apps (all on 127.0.0.1:<free port>):
  /embedder    services/embedder/serve.yaml, v1, 1 replica
  /classifier  services/classifier/serve.yaml, v1
  /canary/<service>/<version>   more versions, each its own application (as the sandbox runs a
                                canary): embedder v2, classifier v1 and v2
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.services.raylocal import LocalRay
from tests.services.servedeploy import app_from_serve_yaml, serve_run


@dataclass
class ServeStack:
    ray: LocalRay
    http_port: int
    config: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def url(self, path: str) -> str:
        return self.base + path

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.ray.metrics_port}/metrics", timeout=30).text

    def redeploy(self, apps: list[dict[str, Any]]) -> None:
        serve_run(self.ray.address, apps, self.http_port, self.ray.temp_dir)


def session_apps(**overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """The session's Serve applications; `overrides[name]` replaces deployment fields."""
    one = {"num_replicas": 1}
    return [
        app_from_serve_yaml(
            "embedder",
            name="embedder",
            route_prefix="/embedder",
            deployment={**one, **overrides.get("embedder", {})},
        ),
        app_from_serve_yaml(
            "classifier",
            name="classifier",
            route_prefix="/classifier",
            deployment={**one, **overrides.get("classifier", {})},
        ),
        *(
            app_from_serve_yaml(
                service,
                name=f"canary-{service}-{version}",
                route_prefix=f"/canary/{service}/{version}",
                args={"version": version},
                deployment=one,
            )
            for service, version in (("embedder", "v2"), ("classifier", "v1"), ("classifier", "v2"))
        ),
    ]

"""The canary router: one Serve deployment per service that splits traffic by weight.

It plays Istio's weighted VirtualService. Each version of a service runs as its own Serve
application (`<service>-<version>`); the router is the service's public application and hands
every request to one version, chosen by weight, through a DeploymentHandle to that version's
ingress `forward()` method (services/common/replica.py), which replays the request through the
replica's own FastAPI app. Weights live in `user_config`, so a rollout step is an in-place
`reconfigure()`: no replica restarts and no request is dropped.
"""

from __future__ import annotations

import logging
import random

from pydantic import BaseModel, Field, model_validator
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

logger = logging.getLogger("ray.serve")

# Request headers the replica must not see from the outer hop: hop-by-hop ones, and the length
# that the replica's ASGI replay sets itself (services/common/http.py, ServiceCore.forward).
_DROP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}


class Route(BaseModel):
    app: str  # Serve application of one version, e.g. embedder-v2
    deployment: str  # its ingress deployment (the one with `forward()`)
    weight: int = Field(ge=0, le=100)  # percent of requests


class RouterConfig(BaseModel):
    """A router's `user_config`: the versions it splits traffic between."""

    routes: list[Route] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights(self) -> RouterConfig:
        if sum(r.weight for r in self.routes) != 100:
            raise ValueError(f"route weights must sum to 100, got {self.routes}")
        return self


@serve.deployment
class Router:
    def __init__(self, service: str) -> None:
        self._service = service
        self._routes: list[Route] = []
        self._weights: list[int] = []
        # Handles by (app, deployment), made on first use: a canary's application may still be
        # deploying when its route is added at weight 0.
        self._handles: dict[tuple[str, str], DeploymentHandle] = {}

    def reconfigure(self, user_config: dict) -> None:
        cfg = RouterConfig.model_validate(user_config)
        self._routes = [r for r in cfg.routes if r.weight > 0]
        self._weights = [r.weight for r in self._routes]
        logger.info("%s router weights: %s", self._service, {r.app: r.weight for r in cfg.routes})

    async def __call__(self, request: Request) -> Response:
        route = random.choices(self._routes, weights=self._weights)[0]
        key = (route.app, route.deployment)
        if key not in self._handles:
            self._handles[key] = serve.get_deployment_handle(route.deployment, route.app)
        handle = self._handles[key]
        root = request.scope.get("root_path", "")
        path = request.url.path
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        if request.url.query:
            path = f"{path}?{request.url.query}"
        headers = {k: v for k, v in request.headers.items() if k not in _DROP_HEADERS}
        reply = await handle.forward.remote(request.method, path, await request.body(), headers)
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)


def app(args: dict) -> serve.Application:
    """Serve app builder (`import_path: sandbox.router:app`); args: {service: name}."""
    # serve.deployment wraps the class at import; mypy sees only the plain class.
    return Router.bind(args["service"])  # type: ignore[attr-defined]

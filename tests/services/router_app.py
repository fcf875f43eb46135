"""Test-only router: proves a service class deploys twice (two names, two versions) in ONE Serve
application and answers through `forward()` over a handle, the shape the sandbox's weighted
router uses. Route: /<service>/<version>/<path> -> that deployment's own HTTP app."""

from __future__ import annotations

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from services.classifier.app import Classifier, ClassifierArgs
from services.embedder.app import Embedder, EmbedderArgs


@serve.deployment(max_ongoing_requests=64)
class TestRouter:
    def __init__(self, targets: dict[str, DeploymentHandle]) -> None:
        self.targets = targets

    async def __call__(self, request: Request) -> Response:
        root = request.scope.get("root_path", "")
        service, version, path = request.url.path.removeprefix(root).strip("/").split("/", 2)
        handle = self.targets[f"{service}-{version}"]
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        reply = await handle.forward.remote(
            request.method, f"/{path}", await request.body(), headers
        )
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)


def build(_: dict) -> Application:
    return TestRouter.bind(
        {
            "embedder-v2": Embedder.options(name="embedder-v2").bind(EmbedderArgs(version="v2")),
            "classifier-v1": Classifier.options(name="classifier-v1").bind(ClassifierArgs()),
            "classifier-v2": Classifier.options(name="classifier-v2").bind(
                ClassifierArgs(version="v2")
            ),
        }
    )

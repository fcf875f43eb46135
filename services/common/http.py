"""The HTTP shell around a model replica, shared by every service.

`ServiceCore` owns what is the same for all services: knobs from `user_config`, readiness,
metrics, fault injection, body-size limit, JSON errors. `ServiceCore.build_api()` makes the
replica's FastAPI app (services add their own routes to it). Every POST goes through one ASGI
middleware: readiness gate (503), body limit (413, before parsing), injected faults (test-only),
then the route, then the request metrics.

Deployments are plain Serve deployments whose `__call__(request)` runs that app in-process
(`ServiceCore.serve_http`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import ApiError, ErrorStyle, from_validation
from services.common.knobs import Knobs
from services.common.metrics import ServiceMetrics

log = logging.getLogger("ray.serve")

READY_PATH = "/ready"


@dataclass(frozen=True)
class Reply:
    """A complete HTTP response, as an ASGI app produced it."""

    status: int
    body: bytes
    content_type: str = "application/json"


class ServiceCore:
    def __init__(
        self, service: str, version: str, device: str, knobs: Knobs, error_style: ErrorStyle
    ) -> None:
        self.service, self.version, self.device = service, version, device
        self.knobs = knobs
        self.error_style = error_style
        self.metrics = ServiceMetrics(service, version, device)
        self.ready = False
        self._app: FastAPI | None = None

    def mark_ready(self) -> None:
        self.ready = True
        self.metrics.ready.set(1)
        log.info("%s %s ready on %s", self.service, self.version, self.device)

    def check_health(self) -> None:
        """Serve's health check: a replica that lost its model is restarted."""
        # Re-set every period: a gauge set once at start was not exported by Ray 2.60.
        self.metrics.ready.set(1 if self.ready else 0)
        if not self.ready:
            raise RuntimeError(f"{self.service} {self.version}: model not ready")

    def error_response(self, err: ApiError) -> JSONResponse:
        return JSONResponse(self.error_style.render(err), status_code=err.status)

    def readiness(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "service": self.service,
            "version": self.version,
            "device": self.device,
        }

    def build_api(self, title: str, description: str) -> FastAPI:
        model = self.error_style.model
        errors: dict[int | str, dict[str, Any]] = {
            400: {"model": model, "description": "Body is not valid JSON"},
            413: {"model": model, "description": "Body larger than limits.max_body_bytes"},
            422: {"model": model, "description": "Body breaks the schema or a limit"},
            500: {"model": model, "description": "Injected fault (test-only) or a bug"},
            503: {"model": model, "description": "Replica not ready"},
        }
        app = FastAPI(title=title, description=description, version=self.version, responses=errors)

        @app.exception_handler(ApiError)
        async def api_error(_: Request, exc: ApiError) -> JSONResponse:
            return self.error_response(exc)

        @app.exception_handler(RequestValidationError)
        async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
            return self.error_response(from_validation(exc.errors()))

        @app.exception_handler(StarletteHTTPException)
        async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
            # FastAPI's own 4xx (undecodable body, unknown path, wrong method) in our error style.
            return self.error_response(ApiError(exc.status_code, str(exc.detail), code="http"))

        @app.exception_handler(Exception)
        async def crashed(_: Request, exc: Exception) -> JSONResponse:
            log.exception("%s %s: unhandled error", self.service, self.version)
            return self.error_response(ApiError(500, "internal error", code="internal"))

        @app.get(READY_PATH, responses={503: {"description": "Not ready"}})
        async def ready() -> JSONResponse:
            """Readiness: 200 once the model is loaded and a warm-up inference passed."""
            return JSONResponse(self.readiness(), status_code=200 if self.ready else 503)

        app.add_middleware(_InferenceGate, core=self)
        self._app = app
        return app

    async def serve_http(self, request: Request) -> Response:
        """Answer an HTTP request Serve's proxy passed to the deployment's `__call__`."""
        assert self._app is not None, "build_api() first"
        reply = await run_asgi(self._app, request.scope, request.receive)
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)


async def run_asgi(app: ASGIApp, scope: Scope, receive: Receive) -> Reply:
    """Run an ASGI app on one request and collect its whole response."""
    status, content_type, chunks = 500, "application/json", []
    started = False

    async def send(message: Message) -> None:
        nonlocal status, content_type, started
        if message["type"] == "http.response.start":
            status, started = message["status"], True
            for key, value in message.get("headers", []):
                if key.lower() == b"content-type":
                    content_type = value.decode()
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except Exception:
        # Starlette re-raises an unhandled error after its handler sent the JSON 500 (so
        # servers can log it; `crashed` already did): the client gets that body, not Serve's.
        if not started:
            raise
    return Reply(status, b"".join(chunks), content_type)


class _InferenceGate:
    """ASGI middleware for every POST: readiness, body limit, faults, request metrics."""

    def __init__(self, app: ASGIApp, core: ServiceCore) -> None:
        self.app = app
        self.core = core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            early = await self._early_reply(scope, receive)
            if isinstance(early, ApiError):
                await self.core.error_response(early)(scope, receive, send_and_record)
                return
            body = early
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_and_record)
        finally:
            self.core.metrics.observe_request(status, time.perf_counter() - start)

    async def _early_reply(self, scope: Scope, receive: Receive) -> ApiError | bytes:
        """The request body, or the error that answers the request before any route runs."""
        core = self.core
        if not core.ready:
            return ApiError(503, "model is not ready yet", code="not_ready")
        limit = core.knobs.limits.max_body_bytes
        too_large = ApiError(413, f"body larger than {limit} bytes", code="body_too_large")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return too_large
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return ApiError(400, "client disconnected", code="disconnected")
            body += message.get("body", b"")
            if len(body) > limit:
                return too_large
            if not message.get("more_body", False):
                break
        faults = core.knobs.faults
        if faults.added_latency_ms:
            await asyncio.sleep(faults.added_latency_ms / 1000)
        if faults.error_rate and random.random() < faults.error_rate:
            return ApiError(500, "injected fault (faults.error_rate)", code="injected_fault")
        return bytes(body)

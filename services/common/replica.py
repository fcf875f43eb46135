"""`ModelReplica`: the Serve-facing methods every Gantry deployment shares.

A service class inherits it, creates `self.core` (a `ServiceCore`) in `__init__`, wraps its
batch function with `self.batcher(...)` (a `ModelBatcher`, services/common/batching.py), and gets
`__call__` (HTTP from Serve's ingress), `reconfigure` (user_config -> knobs, batch size and wait
applied live), `check_health` and `run_model` (inference on one dedicated thread, so the event
loop keeps accepting and batching requests while the model computes) for free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import Request, Response

from services.common.batching import ModelBatcher
from services.common.http import ServiceCore
from services.common.knobs import Knobs, parse_knobs

T = TypeVar("T")
In = TypeVar("In")
Out = TypeVar("Out")


class ModelReplica:
    core: ServiceCore
    knobs_model: type[Knobs] = Knobs
    _executor: ThreadPoolExecutor | None = None
    _batchers: tuple[ModelBatcher[Any, Any], ...] = ()

    def batcher(self, model: Callable[[list[In]], Awaitable[list[Out]]]) -> ModelBatcher[In, Out]:
        """`model` (one result per item) behind a ModelBatcher the batching knobs size, now and
        on every reconfigure."""
        batching = self.core.knobs.batching
        made = ModelBatcher(model, batching.max_batch_size, batching.batch_wait_timeout_s)
        self._batchers = (*self._batchers, made)
        return made

    def apply_knobs(self, knobs: Knobs) -> None:
        self.core.knobs = knobs
        for batcher in self._batchers:
            batcher.max_batch_size = knobs.batching.max_batch_size
            batcher.batch_wait_timeout_s = knobs.batching.batch_wait_timeout_s

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this with `user_config` at start and on every in-place config change."""
        self.apply_knobs(parse_knobs(self.knobs_model, user_config))

    def check_health(self) -> None:
        self.core.check_health()

    async def __call__(self, request: Request) -> Response:
        """HTTP entry point: this deployment is its application's ingress."""
        return await self.core.serve_http(request)

    async def run_model(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

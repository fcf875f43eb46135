"""`ModelBatcher`: concurrent requests share model calls, and a batch is cut when the model is
free to run it.

Requests that arrive while the model computes wait, and the next model call takes all of them
(up to `max_batch_size`). A request that finds the model idle waits up to
`batch_wait_timeout_s` for as many requests as the last batch carried (closed-loop clients
answered together come back together), so a lone client never waits and a returning group
does not wait out the whole window. Before the first batch the group is `max_batch_size`.

Why not `@serve.batch`: in Ray Serve 2.60 its loop cuts a batch every `batch_wait_timeout_s`
whether or not the model is free, and the cut batches then queue for their turn
(`max_concurrent_batches`). With a model call of 20-30 ms and a 5 ms window, the batches stayed
at 1.5-3 requests while 16 requests waited inside each replica (docs/performance.md, issue 13),
so each request paid for a nearly unbatched forward pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class ModelBatcher(Generic[In, Out]):
    """`await batcher(item)` runs `model(items)` once for every item waiting with it; `model`
    returns one result per item, in order. Runs on the replica's event loop (not thread-safe)."""

    def __init__(
        self,
        model: Callable[[list[In]], Awaitable[list[Out]]],
        max_batch_size: int,
        batch_wait_timeout_s: float,
    ) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._last_batch = max_batch_size  # requests in the last model call: the group to expect
        self._fill_to = max_batch_size  # waiting requests that end an idle wait
        self._full = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def __call__(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if len(self._waiting) >= self._fill_to:
            self._full.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run_batches())
        return await future

    async def _run_batches(self) -> None:
        # The model was idle: give the expected group up to the wait to arrive.
        self._fill_to = min(self._last_batch, self.max_batch_size)
        if self.batch_wait_timeout_s > 0 and len(self._waiting) < self._fill_to:
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.batch_wait_timeout_s)
        while self._waiting:
            # Requests whose caller went away (client disconnect) are dropped, not computed.
            live = [(item, fut) for item, fut in self._waiting if not fut.done()]
            batch, self._waiting = live[: self.max_batch_size], live[self.max_batch_size :]
            if not batch:
                break
            self._last_batch = len(batch)
            try:
                results = await self.model([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"model returned {len(results)} results for {len(batch)}")
            except Exception as err:  # every request of the batch fails the same way
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

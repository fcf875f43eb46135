"""ModelBatcher: requests that wait while the model computes share the next call."""

from __future__ import annotations

import asyncio

import pytest

from services.common.batching import ModelBatcher


class Model:
    """Doubles its inputs; records each call's batch; each call takes `compute_s`."""

    def __init__(self, compute_s: float = 0.05, fail_on: int | None = None) -> None:
        self.compute_s = compute_s
        self.fail_on = fail_on
        self.calls: list[list[int]] = []

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        await asyncio.sleep(self.compute_s)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [2 * item for item in items]


def test_requests_waiting_during_a_call_share_the_next_one() -> None:
    async def scenario() -> tuple[list[int], list[list[int]]]:
        model = Model(compute_s=0.05)
        batcher = ModelBatcher(model, max_batch_size=32, batch_wait_timeout_s=0)
        first = asyncio.create_task(batcher(0))
        await asyncio.sleep(0.01)  # the model is busy with [0]; 20 more arrive
        rest = [asyncio.create_task(batcher(i)) for i in range(1, 21)]
        results = await asyncio.gather(first, *rest)
        return results, model.calls

    results, calls = asyncio.run(scenario())
    assert results == [2 * i for i in range(21)]
    assert calls == [[0], list(range(1, 21))]


def test_an_idle_model_waits_for_a_burst_up_to_the_window() -> None:
    async def scenario() -> list[list[int]]:
        model = Model(compute_s=0.01)
        batcher = ModelBatcher(model, max_batch_size=32, batch_wait_timeout_s=0.05)
        tasks = [asyncio.create_task(batcher(0))]
        await asyncio.sleep(0.01)  # inside the window: joins the first batch
        tasks += [asyncio.create_task(batcher(i)) for i in (1, 2)]
        await asyncio.gather(*tasks)
        return model.calls

    assert asyncio.run(scenario()) == [[0, 1, 2]]


def test_a_lone_client_does_not_wait_for_company() -> None:
    async def scenario() -> tuple[list[list[int]], float]:
        model = Model(compute_s=0.01)
        batcher = ModelBatcher(model, max_batch_size=32, batch_wait_timeout_s=0.3)
        await batcher(0)  # the first call waits out the window: nothing is known yet
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(1, 6):  # one request at a time, as one closed-loop client sends them
            await batcher(i)
        return model.calls, loop.time() - start

    calls, elapsed = asyncio.run(scenario())
    assert calls == [[i] for i in range(6)]
    assert elapsed < 0.3 * 5 / 2  # waiting the window each time would take 1.5 s


def test_a_returning_group_ends_the_wait_when_it_is_back() -> None:
    async def scenario() -> tuple[list[list[int]], float]:
        model = Model(compute_s=0.01)
        batcher = ModelBatcher(model, max_batch_size=32, batch_wait_timeout_s=0.2)
        await asyncio.gather(*(batcher(i) for i in range(3)))  # a group of 3, window waited
        batcher.batch_wait_timeout_s = 10
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = asyncio.create_task(batcher(3))  # the group comes back one by one
        await asyncio.sleep(0.02)
        await asyncio.gather(first, batcher(4), batcher(5))
        return model.calls, loop.time() - start

    calls, elapsed = asyncio.run(scenario())
    assert calls == [[0, 1, 2], [3, 4, 5]]
    assert elapsed < 5  # cut once the third was back, not after the 10 s window


def test_batches_are_cut_at_max_batch_size_without_waiting_out_the_window() -> None:
    async def scenario() -> tuple[list[list[int]], float]:
        model = Model(compute_s=0.01)
        batcher = ModelBatcher(model, max_batch_size=4, batch_wait_timeout_s=10)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(batcher(i) for i in range(10)))
        return model.calls, loop.time() - start

    calls, elapsed = asyncio.run(scenario())
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert elapsed < 5  # a full first batch does not wait the 10 s window


def test_a_failed_call_fails_its_batch_only() -> None:
    async def scenario() -> list[object]:
        model = Model(compute_s=0.02, fail_on=2)
        batcher = ModelBatcher(model, max_batch_size=2, batch_wait_timeout_s=0)
        return await asyncio.gather(*(batcher(i) for i in range(4)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[0] == 0 and results[1] == 2
    assert all(isinstance(r, ValueError) for r in results[2:])


def test_a_wrong_result_count_fails_the_batch() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    async def scenario() -> None:
        batcher = ModelBatcher(short, max_batch_size=8, batch_wait_timeout_s=0.01)
        await asyncio.gather(batcher(1), batcher(2))

    with pytest.raises(RuntimeError, match="1 results for 2"):
        asyncio.run(scenario())


def test_cancelled_requests_are_not_computed() -> None:
    async def scenario() -> list[list[int]]:
        model = Model(compute_s=0.05)
        batcher = ModelBatcher(model, max_batch_size=32, batch_wait_timeout_s=0)
        first = asyncio.create_task(batcher(0))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(batcher(1))
        kept = asyncio.create_task(batcher(2))
        await asyncio.sleep(0)
        gone.cancel()  # the client went away while the model was busy
        await asyncio.gather(first, kept)
        return model.calls

    assert asyncio.run(scenario()) == [[0], [2]]


def test_knob_changes_apply_to_the_next_batch() -> None:
    async def scenario() -> list[list[int]]:
        model = Model(compute_s=0.01)
        batcher = ModelBatcher(model, max_batch_size=32, batch_wait_timeout_s=0)
        batcher.max_batch_size = 2  # what reconfigure does with new knobs
        await asyncio.gather(*(batcher(i) for i in range(5)))
        return model.calls

    assert asyncio.run(scenario()) == [[0, 1], [2, 3], [4]]

"""MicroBatcher on its own: ordering, batch limits, waiting, and failures that stay inside their batch."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from pmc2.serving.batching import MicroBatcher, Overloaded


class RecordingProcessor:
    """Labels each image with its own value; remembers every batch; can be told to fail or be slow."""

    def __init__(self, delay_s: float = 0.0, fail_when=lambda batch: False) -> None:
        self.batches: list[np.ndarray] = []
        self.delay_s, self.fail_when = delay_s, fail_when

    async def __call__(self, images: np.ndarray) -> list[int]:
        self.batches.append(images.copy())
        await asyncio.sleep(self.delay_s)
        if self.fail_when(images):
            raise RuntimeError("batch failed")
        return [int(value) for value in images[:, 0]]


def request(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1, 1)


async def test_each_caller_gets_its_own_results_in_order() -> None:
    processor = RecordingProcessor(delay_s=0.01)
    batcher = MicroBatcher(processor, max_batch_size=64, max_wait_ms=20)
    requests = [request(*range(10 * i, 10 * i + 1 + i % 3)) for i in range(30)]
    replies = await asyncio.gather(*(batcher.submit(r) for r in requests))
    await batcher.close()
    for sent, (results, queue_ms) in zip(requests, replies, strict=True):
        assert results == sent[:, 0].tolist() and queue_ms >= 0
    assert len(processor.batches) < len(requests)  # concurrent callers shared batches


async def test_batches_stay_within_the_limit_but_never_split_a_request() -> None:
    processor = RecordingProcessor(delay_s=0.02)
    batcher = MicroBatcher(processor, max_batch_size=8, max_wait_ms=50)
    requests = [request(*range(3)) for _ in range(20)]
    await asyncio.gather(*(batcher.submit(r) for r in requests))
    await batcher.close()
    sizes = [len(batch) for batch in processor.batches]
    assert sum(sizes) == 60 and all(size % 3 == 0 for size in sizes)
    assert max(sizes) <= 8 + 3 - 1  # one request may carry a batch past the limit, never more


async def test_an_idle_batcher_answers_at_once_and_a_busy_one_waits_at_most_max_wait() -> None:
    processor = RecordingProcessor(delay_s=0.2)
    batcher = MicroBatcher(processor, max_batch_size=64, max_wait_ms=30)
    start = time.perf_counter()
    _, queue_ms = await batcher.submit(request(1))
    assert queue_ms < 25 and time.perf_counter() - start < 0.35  # did not wait for company
    first = asyncio.create_task(batcher.submit(request(2)))
    await asyncio.sleep(0.01)  # the first batch is in flight; the next request may wait for company
    _, queue_ms = await batcher.submit(request(3))
    await first
    await batcher.close()
    assert queue_ms < 30 + 25  # max_wait plus scheduling slack


async def test_a_failing_batch_fails_only_its_own_requests() -> None:
    processor = RecordingProcessor(delay_s=0.05, fail_when=lambda batch: 666 in batch)
    batcher = MicroBatcher(processor, max_batch_size=4, max_wait_ms=1)
    doomed = asyncio.create_task(batcher.submit(request(666)))
    await asyncio.sleep(0.01)  # its batch is in flight; the next requests form their own
    others = await asyncio.gather(*(batcher.submit(request(value)) for value in (7, 8, 9)))
    with pytest.raises(RuntimeError, match="batch failed"):
        await doomed
    assert [results for results, _ in others] == [[7], [8], [9]]
    results, _ = await batcher.submit(request(5))  # and the batcher goes on serving
    assert results == [5]
    await batcher.close()


async def test_a_full_queue_refuses_at_once_with_retry_after_and_recovers() -> None:
    processor = RecordingProcessor(delay_s=0.1)
    batcher = MicroBatcher(processor, max_batch_size=4, max_wait_ms=1, max_queued_images=6)
    accepted = [asyncio.create_task(batcher.submit(request(value, value))) for value in range(3)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    with pytest.raises(Overloaded, match="outstanding") as refused:
        await batcher.submit(request(99))
    assert time.perf_counter() - start < 0.05 and refused.value.retry_after_s >= 1 and refused.value.http_status == 503
    assert [results for results, _ in await asyncio.gather(*accepted)] == [[0, 0], [1, 1], [2, 2]]
    assert batcher.outstanding_images == 0
    results, _ = await batcher.submit(request(5))
    assert results == [5]
    await batcher.close()

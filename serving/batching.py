"""Dynamic micro-batching: concurrent requests share one generator call.

    submit(images) ─┐
    submit(images) ─┼─▶ queue ──(≤ max_batch_size images or max_wait_ms)──▶ process(batch) ──▶ split results
    submit(images) ─┘
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Pending:
    images: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


BatchProcessor = Callable[[np.ndarray], Awaitable[list]]


class Overloaded(RuntimeError):
    """The queue is full: the caller should come back later (HTTP 503 with Retry-After)."""

    http_status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class MicroBatcher:
    """Collects images from concurrent callers; ``process`` maps a batch to one result per image.
    A request's images stay together, so a batch can pass max_batch_size by at most one request.
    At most ``max_queued_images`` are outstanding (queued or in a batch not yet answered); beyond that
    ``submit`` raises Overloaded at once, so latency stays bounded under overload instead of growing."""

    def __init__(self, process: BatchProcessor, max_batch_size: int, max_wait_ms: float,
                 max_queued_images: int = 4096) -> None:
        self.process, self.max_batch_size, self.max_wait = process, max_batch_size, max_wait_ms / 1e3
        self.max_queued_images = max_queued_images
        self.outstanding_images = 0
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._loop_task = asyncio.create_task(self._collect())

    async def submit(self, images: np.ndarray) -> tuple[list, float]:
        """Results for ``images`` and the ms they waited in the queue."""
        if self.outstanding_images + len(images) > self.max_queued_images:
            raise Overloaded(f"overloaded: {self.outstanding_images} images outstanding", retry_after_s=1)
        pending = _Pending(images, asyncio.get_running_loop().create_future())
        self.outstanding_images += len(images)
        try:
            await self.queue.put(pending)
            results, started = await pending.future
        finally:
            self.outstanding_images -= len(images)
        return results, 1e3 * (started - pending.enqueued)

    async def _collect(self) -> None:
        """Take what is queued; wait up to max_wait for more only while another batch is in flight
        (an idle edge answers a lone request at once; a busy one lets batches grow)."""
        while True:
            batch = [await self.queue.get()]
            count = len(batch[0].images)
            deadline = time.perf_counter() + self.max_wait
            while count < self.max_batch_size:
                if not self.queue.empty():
                    item = self.queue.get_nowait()
                else:
                    remaining = deadline - time.perf_counter()
                    if not self._tasks or remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                batch.append(item)
                count += len(item.images)
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            results = await self.process(np.concatenate([item.images for item in batch]))
        except Exception as error:  # every caller of this batch gets the error
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        offset = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result((results[offset : offset + len(item.images)], started))
            offset += len(item.images)

    async def close(self) -> None:
        """Finish the batches in flight, then stop collecting."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._loop_task.cancel()

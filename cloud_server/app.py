"""The untrusted cloud server: decode the edge's batch, classify it, return labels.

    POST /v1/classify  (application/x-pmc2: a batch in any link codec of runtime.link_codecs)
      → {"labels": [...], "classes": [...], "batch_size", "timings_ms": {"decompression", "recognition", "other_cloud"}, "bytes_received"}
    GET /healthz · /readyz · /metrics
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from aiohttp import web

from pmc2.cloud_server.config import CloudConfig
from pmc2.cloud_server.recognition import CloudRecognizer
from pmc2.serving.batching import MicroBatcher
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
from pmc2.serving.http_common import METRICS, read_body, service_app

@dataclass
class Classified:
    label: int
    recognition_ms: float  # of the whole micro-batch the image was classified in
    batch_size: int


class CloudState:
    """Models, the worker thread, and the micro-batcher in front of the target (requests share its calls)."""

    def __init__(self, config: CloudConfig) -> None:
        self.recognizer = CloudRecognizer(ModelBundle.open(config.models), config.sessions, config.max_image_pixels)
        # One worker: the ORT sessions already use every CPU the process has.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloud-ort")
        self.batcher = MicroBatcher(self._classify, config.max_batch_size, config.max_wait_ms, config.max_queued_images)

    async def _classify(self, images: np.ndarray) -> list[Classified]:
        start = time.perf_counter()
        labels = await asyncio.get_running_loop().run_in_executor(self.executor, self.recognizer.classify, images)
        elapsed_ms = 1e3 * (time.perf_counter() - start)
        return [Classified(label, elapsed_ms, len(images)) for label in labels]

    async def close(self) -> None:
        await self.batcher.close()
        self.executor.shutdown(wait=True)


CONFIG = web.AppKey("config", CloudConfig)
STATE = web.AppKey("state", CloudState)


async def classify_handler(request: web.Request) -> web.Response:
    start = time.perf_counter()
    state = request.app[STATE]
    body = await read_body(request, (CONTENT_TYPE,))
    batch = EncodedBatch.from_bytes(body, max_images=request.app[CONFIG].max_batch_images)
    images = await asyncio.get_running_loop().run_in_executor(state.executor, state.recognizer.decode, batch)
    decoded = time.perf_counter()
    results, queue_ms = await state.batcher.submit(images)
    request.app[METRICS].images.inc(len(results))
    total_ms = 1e3 * (time.perf_counter() - start)
    decompression_ms, recognition_ms = 1e3 * (decoded - start), results[0].recognition_ms
    return web.json_response({
        "labels": [r.label for r in results],
        "classes": [state.recognizer.class_names[r.label] for r in results],
        "codec": batch.codec,
        "bytes_received": len(body),
        "batch_size": results[0].batch_size,
        "timings_ms": {
            "decompression": decompression_ms,
            "queue": queue_ms,
            "recognition": recognition_ms,
            "other_cloud": max(0.0, total_ms - decompression_ms - recognition_ms),
            "total_cloud": total_ms,
        },
    })


async def _state(app: web.Application) -> AsyncIterator[None]:
    app[STATE] = state = CloudState(app[CONFIG])
    app[METRICS].outstanding.set_function(lambda: state.batcher.outstanding_images)
    yield
    await app[STATE].close()


def create_app(config: CloudConfig = CloudConfig()) -> web.Application:
    app = service_app("pmc2_cloud", config.max_body_bytes, ready_key=STATE)
    app[CONFIG] = config
    app.cleanup_ctx.append(_state)
    app.router.add_post("/v1/classify", classify_handler)
    return app

"""The untrusted cloud server: decode the edge's batch, classify it, return labels.

    POST /v1/classify  (application/x-pmc2: a batch in any link codec of runtime.link_codecs)
      → {"labels": [...], "classes": [...], "batch_size", "timings_ms": {"decompression", "recognition", "other_cloud"}, "bytes_received"}
    POST /v1/facemix   (application/x-npy: float16 FaceMix mixtures [N, 64, 16, 16]; when the bundle holds FaceMix)
      → application/x-npy float16 [N, 256], the cloud part's outputs; stage timings in Server-Timing
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
from pmc2.runtime.facemix import CLOUD_MODEL as FACEMIX_CLOUD_MODEL, FaceMixCloud
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.tensor_payload import CONTENT_TYPE as NPY, from_npy, to_npy
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
from pmc2.serving.http_common import METRICS, RequestRejected, read_body, server_timing, service_app

@dataclass
class Classified:
    label: int
    recognition_ms: float  # of the whole micro-batch the image was classified in
    batch_size: int


class CloudState:
    """Models, the worker thread, and the micro-batchers in front of the target and of FaceMix's cloud part
    (requests share their calls)."""

    def __init__(self, config: CloudConfig) -> None:
        bundle = ModelBundle.open(config.models)
        self.recognizer = CloudRecognizer(bundle, config.sessions, config.max_image_pixels)
        # One worker: the ORT sessions already use every CPU the process has.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloud-ort")
        self.batcher = MicroBatcher(self._classify, config.max_batch_size, config.max_wait_ms, config.max_queued_images)
        self.facemix = FaceMixCloud(bundle, config.sessions) if FACEMIX_CLOUD_MODEL in bundle.manifest["models"] else None
        self.facemix_batcher = MicroBatcher(self._facemix, config.max_batch_size, config.max_wait_ms,
                                            config.max_queued_images) if self.facemix else None

    async def _facemix(self, mixed: np.ndarray) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.facemix.run, mixed)

    async def _classify(self, images: np.ndarray) -> list[Classified]:
        start = time.perf_counter()
        labels = await asyncio.get_running_loop().run_in_executor(self.executor, self.recognizer.classify, images)
        elapsed_ms = 1e3 * (time.perf_counter() - start)
        return [Classified(label, elapsed_ms, len(images)) for label in labels]

    async def close(self) -> None:
        await self.batcher.close()
        if self.facemix_batcher:
            await self.facemix_batcher.close()
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


async def facemix_handler(request: web.Request) -> web.Response:
    start = time.perf_counter()
    state = request.app[STATE]
    if state.facemix is None:
        raise RequestRejected(404, "this cloud's model bundle holds no FaceMix model")
    body = await read_body(request, (NPY,))
    mixed = from_npy(body, state.facemix.input_shape, request.app[CONFIG].max_batch_images)
    decoded = time.perf_counter()
    outputs, queue_ms = await state.facemix_batcher.submit(mixed)
    request.app[METRICS].images.inc(len(mixed))
    done = time.perf_counter()
    response = web.Response(body=to_npy(np.asarray(outputs)), content_type=NPY)
    timings = {"decompression": 1e3 * (decoded - start), "queue": queue_ms,
               "recognition": 1e3 * (done - decoded) - queue_ms, "total_cloud": 1e3 * (time.perf_counter() - start)}
    timings["other_cloud"] = max(0.0, timings["total_cloud"] - timings["decompression"] - timings["recognition"])
    response.headers["Server-Timing"] = server_timing(timings)
    return response


async def _state(app: web.Application) -> AsyncIterator[None]:
    app[STATE] = state = CloudState(app[CONFIG])
    app[METRICS].outstanding.set_function(
        lambda: state.batcher.outstanding_images + (state.facemix_batcher.outstanding_images if state.facemix_batcher else 0))
    yield
    await app[STATE].close()


def create_app(config: CloudConfig = CloudConfig()) -> web.Application:
    app = service_app("pmc2_cloud", config.max_body_bytes, ready_key=STATE)
    app[CONFIG] = config
    app.cleanup_ctx.append(_state)
    app.router.add_post("/v1/classify", classify_handler)
    app.router.add_post("/v1/facemix", facemix_handler)
    return app

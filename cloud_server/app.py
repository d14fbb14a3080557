"""The untrusted cloud server: decode the edge's batch, classify it, return labels.

    POST /v1/classify  (application/x-pmc2: a batch in any link codec of runtime.link_codecs; 429 with Retry-After
                        beyond the optional per-client rate limit)
      → {"labels": [...], "classes": [...], "codec", "compressor", "batch_size", "timings_ms": {"decompression",
         "recognition", "other_cloud"}, "bytes_received"}; 400 for a compressor the cloud's bundle lacks, 409 for a
         batch of latents whose X-PMC2-Tables names other entropy tables than the bundle's for its compressor
    POST /v1/split/<protector>  (application/x-npy: float16 [N, …] of what a split protector's edge part sends;
                                 404 when the bundle lacks that protector's cloud model)
      → application/x-npy float16 [N, …], its cloud part's outputs; stage timings in Server-Timing
    GET /healthz · /readyz · /metrics
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from aiohttp import web

from pmc2.cloud_server.config import CloudConfig
from pmc2.cloud_server.recognition import CloudRecognizer
from pmc2.serving.batching import MicroBatcher
from pmc2.runtime.compressors import TABLES_HEADER
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.protection import bundle_protectors, protector_named, split_protector
from pmc2.runtime.split_protection import SPLIT_ROUTE, SplitProtector
from pmc2.runtime.tensor_payload import CONTENT_TYPE as NPY, from_npy, to_npy
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
from pmc2.serving.http_common import METRICS, RequestRejected, read_body, server_timing, service_app
from pmc2.serving.rate_limit import RateLimiter, client_identity

@dataclass
class Classified:
    label: int
    recognition_ms: float  # of the whole micro-batch the image was classified in
    batch_size: int


class CloudState:
    """Models, the worker thread, the micro-batchers in front of the target and of each split protector's
    cloud part (requests share their calls), and the per-client rate limit of /v1/classify (None: off)."""

    def __init__(self, config: CloudConfig) -> None:
        bundle = ModelBundle.open(config.models)
        self.recognizer = CloudRecognizer(bundle, config.sessions, config.max_image_pixels)
        # One worker: the ORT sessions already use every CPU the process has.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloud-ort")
        self.batcher = MicroBatcher(self._classify, config.max_batch_size, config.max_wait_ms, config.max_queued_images)
        self.split: dict[str, SplitProtector] = {name: split_protector(name, bundle, "cloud", config.sessions)
                                                 for name in bundle_protectors(bundle, "split", side="cloud")}
        self.split_batchers = {name: MicroBatcher(functools.partial(self._run_split, split), config.max_batch_size,
                                                  config.max_wait_ms, config.max_queued_images)
                               for name, split in self.split.items()}
        self.limiter = (RateLimiter(config.client_images_per_s, config.client_burst_images)
                        if config.client_images_per_s is not None else None)

    def split_named(self, name: str) -> SplitProtector:
        """Split protector ``name``'s cloud part; 400 for a name that is no split protector, 404 when this
        cloud's bundle lacks it."""
        protector_named(name, "split")
        if name not in self.split:
            raise RequestRejected(404, f"this cloud's model bundle holds no model for split protector {name!r}")
        return self.split[name]

    async def _run_split(self, split: SplitProtector, received: np.ndarray) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self.executor, split.cloud_part, received)

    async def _classify(self, images: np.ndarray) -> list[Classified]:
        start = time.perf_counter()
        labels = await asyncio.get_running_loop().run_in_executor(self.executor, self.recognizer.classify, images)
        elapsed_ms = 1e3 * (time.perf_counter() - start)
        return [Classified(label, elapsed_ms, len(images)) for label in labels]

    async def close(self) -> None:
        for batcher in (self.batcher, *self.split_batchers.values()):
            await batcher.close()
        self.executor.shutdown(wait=True)


CONFIG = web.AppKey("config", CloudConfig)
STATE = web.AppKey("state", CloudState)


async def classify_handler(request: web.Request) -> web.Response:
    start = time.perf_counter()
    state = request.app[STATE]
    body = await read_body(request, (CONTENT_TYPE,))
    batch = EncodedBatch.from_bytes(body, max_images=request.app[CONFIG].max_batch_images)
    state.recognizer.check_tables(batch, request.headers.get(TABLES_HEADER))
    if state.limiter is not None:
        state.limiter.take(client_identity(request), batch.images)
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
        "compressor": batch.compressor,
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


async def split_handler(request: web.Request) -> web.Response:
    start = time.perf_counter()
    state, name = request.app[STATE], request.match_info["protector"]
    split = state.split_named(name)
    body = await read_body(request, (NPY,))
    received = from_npy(body, split.cloud_input_shape, request.app[CONFIG].max_batch_images)
    decoded = time.perf_counter()
    outputs, queue_ms = await state.split_batchers[name].submit(received)
    request.app[METRICS].images.inc(len(received))
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
        lambda: sum(batcher.outstanding_images for batcher in (state.batcher, *state.split_batchers.values())))
    yield
    await app[STATE].close()


def create_app(config: CloudConfig = CloudConfig()) -> web.Application:
    app = service_app("pmc2_cloud", config.max_body_bytes, ready_key=STATE)
    app[CONFIG] = config
    app.cleanup_ctx.append(_state)
    app.router.add_post("/v1/classify", classify_handler)
    app.router.add_post(SPLIT_ROUTE, split_handler)
    return app

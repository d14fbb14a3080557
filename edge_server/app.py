"""The secure edge server (runs in the CoCo pod): perturb, compress, forward, answer.

    POST /v1/recognize  (Bearer token; image/jpeg, image/png, or application/x-pmc2 batch of them;
                         ?codec=<any link codec of runtime.link_codecs> overrides the configured one)
      → {"labels", "classes", "s2_bytes", "batch_size", "timings_ms": {decode, queue, generation, compression,
         network_edge_cloud, decompression, recognition, other_cloud, other_edge, total_edge}}
    GET /healthz · /readyz · /metrics
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from pmc2.edge_server.batching import MicroBatcher
from pmc2.edge_server.cloud_link import CloudLink
from pmc2.edge_server.config import EdgeConfig
from pmc2.edge_server.protection import EdgeProtector
from pmc2.runtime.image_decoding import decode_images
from pmc2.runtime.link_codecs import LinkCodec, PillowLink, codec_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.secrets import fetch_secret
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch, WireFormatError
from pmc2.serving.http_common import METRICS, RequestRejected, read_body, service_app

IMAGE_TYPES = ("image/jpeg", "image/png")
MODEL_SIZE = (32, 32)
EDGE_MODELS = ("generator", "g_a")


@dataclass
class ImageResult:
    label: int
    s2_bytes: float  # a batch-wide stream's bytes are shared equally by its images
    batch_size: int
    timings_ms: dict[str, float]


class EdgeState:
    """Everything a running edge holds: models, the worker thread, the cloud link, one batcher per codec."""

    def __init__(self, config: EdgeConfig, bundle: ModelBundle) -> None:
        self.config = config
        self.class_names = bundle.class_names
        self.protector = EdgeProtector(bundle, config.sessions, config.jpeg_quality, config.webp_quality)
        # One worker: the ORT sessions already use every CPU the process has.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-ort")
        self.cloud = CloudLink(config.cloud_url, config.cloud_ca, config.cloud_client_cert,
                               config.cloud_timeout_s, config.cloud_connect_retries)
        self.batchers = {
            name: MicroBatcher(self._processor(codec), config.max_batch_size, config.max_wait_ms)
            for name, codec in self.protector.codecs.items()
        }

    def _processor(self, codec: LinkCodec):
        async def process(images) -> list[ImageResult]:
            loop = asyncio.get_running_loop()
            protected = await loop.run_in_executor(self.executor, self.protector.protect, images, codec.name)
            reply = await self.cloud.classify(EncodedBatch(codec.name, protected.payloads, len(images)))
            cloud = reply.timings_ms
            timings = {
                "generation": protected.generation_ms, "compression": protected.compression_ms,
                "network_edge_cloud": max(0.0, reply.round_trip_ms - cloud["total_cloud"]),
                "decompression": cloud["decompression"], "recognition": cloud["recognition"],
                "other_cloud": cloud["other_cloud"],
            }
            sizes = [len(payload) for payload in protected.payloads]
            if codec.one_stream:  # the batch's stream is shared equally by its images
                sizes = [sizes[0] / len(images)] * len(images)
            return [ImageResult(label, size, len(images), timings) for label, size in zip(reply.labels, sizes, strict=True)]

        return process

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
        await self.cloud.close()
        self.executor.shutdown(wait=True)


def open_edge_bundle(config: EdgeConfig) -> ModelBundle:
    """The edge's models, decrypted with the data hub's key when configured; every file the edge
    uses is checked against the manifest's sha256 (ModelIntegrityError otherwise)."""
    key = fetch_secret(config.model_key_uri) if config.model_key_uri else None
    bundle = ModelBundle.open(config.models, model_key=key)
    for name in EDGE_MODELS:
        bundle.model_bytes(name)
    bundle.entropy_tables()
    return bundle


STATE = web.AppKey("state", EdgeState)
CONFIG = web.AppKey("config", EdgeConfig)


def _authorized(request: web.Request, config: EdgeConfig) -> bool:
    if config.allow_unauthenticated:
        return True
    token = config.token
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token.encode())


def _client_payloads(content_type: str, body: bytes, max_images: int) -> list[bytes]:
    if content_type in IMAGE_TYPES:
        return [body]
    batch = EncodedBatch.from_bytes(body, max_images=max_images)
    if not issubclass(codec_named(batch.codec), PillowLink):
        raise WireFormatError(f"the edge takes images from clients, not a {batch.codec} batch")
    return batch.payloads


def _server_timing(timings: dict[str, float]) -> str:
    return ", ".join(f"{name};dur={value:.3f}" for name, value in timings.items())


async def recognize_handler(request: web.Request) -> web.Response:
    start = time.perf_counter()
    config, state = request.app[CONFIG], request.app[STATE]
    if not _authorized(request, config):
        raise RequestRejected(401, "missing or wrong bearer token")
    codec = codec_named(request.query.get("codec", config.codec)).name
    body = await read_body(request, (*IMAGE_TYPES, CONTENT_TYPE))
    payloads = _client_payloads(request.content_type, body, config.max_request_images)
    loop = asyncio.get_running_loop()
    decode_start = time.perf_counter()
    images = await loop.run_in_executor(state.executor, decode_images, payloads, config.max_image_pixels, MODEL_SIZE,
                                        config.resize_policy)
    decode_ms = 1e3 * (time.perf_counter() - decode_start)
    results, queue_ms = await state.batchers[codec].submit(images)
    request.app[METRICS].images.inc(len(results))
    timings = {"decode": decode_ms, "queue": queue_ms, **results[0].timings_ms}
    total_ms = 1e3 * (time.perf_counter() - start)
    timings["other_edge"] = max(0.0, total_ms - sum(timings.values()))
    timings["total_edge"] = total_ms
    response = web.json_response({
        "labels": [r.label for r in results],
        "classes": [state.class_names[r.label] for r in results],
        "s2_bytes": [r.s2_bytes for r in results],
        "codec": codec,
        "batch_size": results[0].batch_size,
        "timings_ms": timings,
    })
    response.headers["Server-Timing"] = _server_timing(timings)
    return response


def create_app(config: EdgeConfig, bundle: ModelBundle | None = None) -> web.Application:
    """The edge app; ``bundle``, when the caller has already opened and checked it, is used as it is."""
    app = service_app("pmc2_edge", config.max_body_bytes, ready_key=STATE)
    app[CONFIG] = config

    async def edge_state(app: web.Application) -> AsyncIterator[None]:
        app[STATE] = EdgeState(config, bundle or open_edge_bundle(config))
        yield
        await app[STATE].close()

    app.cleanup_ctx.append(edge_state)
    app.router.add_post("/v1/recognize", recognize_handler)
    return app

"""The secure edge server (runs in the CoCo pod): perturb, compress, forward, answer.

    POST /v1/recognize  (Bearer token; image/jpeg, image/png, or application/x-pmc2 batch of them;
                         ?codec=<any link codec of runtime.link_codecs> and ?protector=<any protector of
                         runtime.protection the bundle holds> override the configured ones)
      → {"labels", "classes", "s2_bytes", "codec", "protector", "batch_size", "timings_ms": {decode, queue, generation, compression,
         network_edge_cloud, decompression, recognition, other_cloud, other_edge, total_edge}}
    GET /ui, /ui/config · POST /v1/inspect (the page: edge_server/inspection.py)
    GET /healthz · /readyz · /metrics
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web

from pmc2.edge_server.config import EdgeConfig
from pmc2.edge_server.inspection import add_inspection_routes
from pmc2.edge_server.state import CONFIG, IMAGE_TYPES, MODEL_SIZE, STATE, EdgeState, open_edge_bundle, require_token
from pmc2.runtime.image_decoding import decode_images
from pmc2.runtime.link_codecs import PillowLink, codec_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch, WireFormatError
from pmc2.serving.http_common import METRICS, read_body, server_timing, service_app


def _client_payloads(content_type: str, body: bytes, max_images: int) -> list[bytes]:
    if content_type in IMAGE_TYPES:
        return [body]
    batch = EncodedBatch.from_bytes(body, max_images=max_images)
    if not issubclass(codec_named(batch.codec), PillowLink):
        raise WireFormatError(f"the edge takes images from clients, not a {batch.codec} batch")
    return batch.payloads


async def recognize_handler(request: web.Request) -> web.Response:
    start = time.perf_counter()
    config, state = request.app[CONFIG], request.app[STATE]
    require_token(request, config)
    protector, codec = state.route(request.query.get("protector"), request.query.get("codec"))
    body = await read_body(request, (*IMAGE_TYPES, CONTENT_TYPE))
    payloads = _client_payloads(request.content_type, body, config.max_request_images)
    loop = asyncio.get_running_loop()
    decode_start = time.perf_counter()
    images = await loop.run_in_executor(state.executor, decode_images, payloads, config.max_image_pixels, MODEL_SIZE,
                                        config.resize_policy)
    decode_ms = 1e3 * (time.perf_counter() - decode_start)
    results, queue_ms = await state.batchers[protector, codec].submit(images)
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
        "protector": protector,
        "batch_size": results[0].batch_size,
        "timings_ms": timings,
    })
    response.headers["Server-Timing"] = server_timing(timings)
    return response


def create_app(config: EdgeConfig, bundle: ModelBundle | None = None) -> web.Application:
    """The edge app; ``bundle``, when the caller has already opened and checked it, is used as it is."""
    app = service_app("pmc2_edge", config.max_body_bytes, ready_key=STATE)
    app[CONFIG] = config

    async def edge_state(app: web.Application) -> AsyncIterator[None]:
        app[STATE] = state = EdgeState(config, bundle or open_edge_bundle(config))
        app[METRICS].outstanding.set_function(lambda: sum(b.outstanding_images for b in state.batchers.values()))
        yield
        await app[STATE].close()

    app.cleanup_ctx.append(edge_state)
    app.router.add_post("/v1/recognize", recognize_handler)
    add_inspection_routes(app)
    return app

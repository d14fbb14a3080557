"""The untrusted cloud server: decode the edge's batch, classify it, return labels.

    POST /v1/classify  (application/x-pmc2: a batch in any link codec of runtime.link_codecs)
      → {"labels": [...], "classes": [...], "timings_ms": {"decompression", "recognition", "other_cloud"}, "bytes_received"}
    GET /healthz · /readyz · /metrics
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from pmc2.cloud_server.config import CloudConfig
from pmc2.cloud_server.recognition import CloudRecognizer
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
from pmc2.serving.http_common import METRICS, read_body, service_app

CONFIG = web.AppKey("config", CloudConfig)
RECOGNIZER = web.AppKey("recognizer", CloudRecognizer)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)


async def classify_handler(request: web.Request) -> web.Response:
    start = time.perf_counter()
    body = await read_body(request, (CONTENT_TYPE,))
    batch = EncodedBatch.from_bytes(body, max_images=request.app[CONFIG].max_batch_images)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(request.app[EXECUTOR], request.app[RECOGNIZER].recognize, batch)
    request.app[METRICS].images.inc(len(result.labels))
    total_ms = 1e3 * (time.perf_counter() - start)
    return web.json_response({
        "labels": result.labels,
        "classes": [request.app[RECOGNIZER].class_names[label] for label in result.labels],
        "codec": batch.codec,
        "bytes_received": len(body),
        "timings_ms": {
            "decompression": result.decompression_ms,
            "recognition": result.recognition_ms,
            "other_cloud": max(0.0, total_ms - result.decompression_ms - result.recognition_ms),
            "total_cloud": total_ms,
        },
    })


async def _models(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[RECOGNIZER] = CloudRecognizer(ModelBundle.open(config.models), config.sessions, config.max_image_pixels)
    app[EXECUTOR] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloud-ort")
    yield
    app[EXECUTOR].shutdown(wait=True)


def create_app(config: CloudConfig = CloudConfig()) -> web.Application:
    app = service_app("pmc2_cloud", config.max_body_bytes, ready_key=RECOGNIZER)
    app[CONFIG] = config
    app.cleanup_ctx.append(_models)
    app.router.add_post("/v1/classify", classify_handler)
    return app

"""The edge's page: upload a photo and see exactly what leaves the trusted domain.

    GET  /ui          the page (one static file, no external assets)
    GET  /ui/config   link codecs, the edge's protectors and a few bundled CIFAR-10 samples (PNG data URLs)
    POST /v1/inspect  (bearer token; ?codec=, ?protector=) one image → the image the edge received, the
                      protector's output x', what the cloud decodes (all PNG data URLs), the cloud's label
                      and class, S1/S2 bytes, stage timings

``/v1/recognize`` never returns images; only this route does, and only to an authorised caller. The image
goes from the page to this edge and nowhere else; the cloud receives what the chosen link carries.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from importlib import resources

import numpy as np
from aiohttp import web
from PIL import Image

from pmc2.edge_server.state import CONFIG, IMAGE_TYPES, MODEL_SIZE, STATE, require_token, stage_timings
from pmc2.runtime.cifar10 import CLASSES, SAMPLE_FILE, load_npz
from pmc2.runtime.image_decoding import decode_images
from pmc2.runtime.link_codecs import LINK_CODECS
from pmc2.runtime.normalization import to_uint8_nhwc
from pmc2.serving.http_common import RequestRejected, read_body

SAMPLES = 8


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 HWC pixels as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def bundled_samples() -> list[dict]:
    """The first bundled evaluation images with their class names (none in an install without the sample)."""
    if not SAMPLE_FILE.is_file():
        return []
    sample = load_npz(SAMPLE_FILE)
    return [{"image": png_data_url(pixels), "class": CLASSES[label]}
            for pixels, label in zip(sample.images[:SAMPLES], sample.labels[:SAMPLES])]


def add_inspection_routes(app: web.Application) -> None:
    """Register the page, its configuration and the inspect endpoint on the edge ``app``."""
    page = resources.files("pmc2.edge_server").joinpath("ui/index.html").read_bytes()
    samples = bundled_samples()

    async def ui(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def ui_config(request: web.Request) -> web.Response:
        config, state = request.app[CONFIG], request.app[STATE]
        return web.json_response({"codecs": list(LINK_CODECS), "default_codec": config.codec,
                                  "protectors": list(state.protection.protectors), "default_protector": config.protector,
                                  "samples": samples})

    async def inspect(request: web.Request) -> web.Response:
        start = time.perf_counter()
        config, state = request.app[CONFIG], request.app[STATE]
        require_token(request, config)
        protector, codec = state.route(request.query.get("protector"), request.query.get("codec"))
        if protector not in state.protection.protectors:
            raise RequestRejected(400, f"the page shows what image protectors ({', '.join(state.protection.protectors)}) "
                                       f"send; {protector!r} sends no image")
        body = await read_body(request, IMAGE_TYPES)
        loop = asyncio.get_running_loop()
        received = await loop.run_in_executor(state.executor, decode_images, [body], config.max_image_pixels,
                                              MODEL_SIZE, config.resize_policy)
        decoded_at = time.perf_counter()
        protected = await loop.run_in_executor(state.executor, state.protection.protect, received, codec, protector)
        reply = await state.cloud.classify(protected.batch)
        link = state.protection.link(codec, protector)
        cloud_view = await loop.run_in_executor(state.executor, link.decode, protected.batch.payloads, 1)
        s2_bytes = sum(map(len, protected.batch.payloads))
        timings = {"decode": 1e3 * (decoded_at - start),
                   **stage_timings(protected.generation_ms, protected.compression_ms, reply)}
        timings["other_edge"] = max(0.0, 1e3 * (time.perf_counter() - start) - sum(timings.values()))
        label = reply.labels[0]
        return web.json_response({
            "label": label, "class": state.class_names[label], "codec": codec, "protector": protector,
            "s1_bytes": len(body), "s2_bytes": s2_bytes,
            "cloud_saw": f"The cloud received only {s2_bytes} bytes over the {codec} link; the image on the right "
                         "is what it decodes from them",
            "images": {"received": png_data_url(received[0]),
                       "perturbed": png_data_url(to_uint8_nhwc(protected.perturbed)[0]),
                       "decoded": png_data_url(to_uint8_nhwc(cloud_view)[0])},
            "timings_ms": timings,
        })

    app.router.add_get("/ui", ui)
    app.router.add_get("/ui/config", ui_config)
    app.router.add_post("/v1/inspect", inspect)

"""The three ways a phone can ask for a label, each timed stage by stage (PMC² Fig. 4).

    pmc2:         JPEG on phone ──HTTPS──▶ edge (protect, compress) ──HTTPS──▶ cloud
    pp-baseline:  protect on phone (ORT) ──PNG──HTTPS──▶ cloud                  (MMSys'22)
    unprotected:  original ──PNG──HTTPS──▶ cloud

The protector (runtime.protection: PMC²'s perturbation by default, or DAPter's converter) is chosen by
name: the edge runs it in pmc2 mode, the phone itself in pp-baseline mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import numpy as np

from pmc2.runtime.image_codecs import jpeg_bytes
from pmc2.runtime.link_codecs import CodecContext, PngLink, codec_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.runtime.protection import DEFAULT_PROTECTOR, Protector, protector_named
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch

MODES = ("pmc2", "pp-baseline", "unprotected")
STAGES = ("jpeg_mobile", "network_mobile_edge", "generation", "compression", "other_edge",
          "network_edge_cloud", "decompression", "recognition", "other_cloud")


class RequestFailed(RuntimeError):
    pass


@dataclass
class ImageRecord:
    index: int
    truth: int
    label: int | None = None
    class_name: str | None = None
    s1_bytes: int | None = None
    s2_bytes: int | None = None
    end_to_end_ms: float | None = None
    batch_size: int | None = None  # the edge's micro-batch this image travelled in (pmc2 mode)
    stages_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def correct(self) -> bool:
        return self.label is not None and self.label == self.truth


async def _post_json(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict) -> dict:
    async with session.post(url, data=body, headers=headers) as response:
        reply = await response.json(content_type=None)
        if response.status != 200:
            raise RequestFailed(f"HTTP {response.status}: {reply.get('error', reply)}")
        return reply


class Phone:
    """One simulated phone: knows the edge and cloud URLs and, for pp-baseline, holds the generator."""

    def __init__(self, edge_url: str, cloud_url: str, token: str | None, jpeg_quality: int,
                 edge_codec: str | None, bundle: ModelBundle | None = None, direct_codec: str = PngLink.name,
                 protector: str = DEFAULT_PROTECTOR) -> None:
        """``edge_codec``: the edge→cloud link codec (None: the edge's choice for the protector);
        ``direct_codec``: the link codec of the modes that upload straight to the cloud (lossless PNG, as MMSys'22)."""
        query = urlencode({"protector": protector_named(protector).name, **({"codec": edge_codec} if edge_codec else {})})
        self.edge_url = f"{edge_url.rstrip('/')}/v1/recognize?{query}"
        self.cloud_url = f"{cloud_url.rstrip('/')}/v1/classify"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.jpeg_quality = jpeg_quality
        image_protector = bundle is not None and protector_named(protector).kind == "image"
        self.protector = Protector(bundle, name=protector) if image_protector else None
        self.direct = codec_named(direct_codec).build(CodecContext())

    async def pmc2(self, session: aiohttp.ClientSession, pixels: np.ndarray, record: ImageRecord) -> None:
        start = time.perf_counter()
        payload = jpeg_bytes(pixels, self.jpeg_quality)
        encoded = time.perf_counter()
        reply = await _post_json(session, self.edge_url, payload, {**self.headers, "Content-Type": "image/jpeg"})
        done = time.perf_counter()
        edge = reply["timings_ms"]
        record.label, record.class_name = reply["labels"][0], reply["classes"][0]
        record.s1_bytes, record.s2_bytes, record.batch_size = len(payload), reply["s2_bytes"][0], reply["batch_size"]
        record.stages_ms = {
            "jpeg_mobile": 1e3 * (encoded - start),
            "network_mobile_edge": max(0.0, 1e3 * (done - encoded) - edge["total_edge"]),
            "generation": edge["generation"], "compression": edge["compression"],
            "other_edge": edge["decode"] + edge["queue"] + edge["other_edge"],
            **{key: edge[key] for key in ("network_edge_cloud", "decompression", "recognition", "other_cloud")},
        }
        record.end_to_end_ms = 1e3 * (done - start)

    async def _direct_to_cloud(self, session: aiohttp.ClientSession, images_unit: np.ndarray, record: ImageRecord,
                               generation_ms: float, start: float) -> None:
        encode_start = time.perf_counter()
        payload = self.direct.encode(images_unit)[0]
        encoded = time.perf_counter()
        body = EncodedBatch(self.direct.name, [payload]).to_bytes()
        reply = await _post_json(session, self.cloud_url, body, {"Content-Type": CONTENT_TYPE})
        done = time.perf_counter()
        cloud = reply["timings_ms"]
        record.label, record.class_name, record.s2_bytes = reply["labels"][0], reply["classes"][0], len(payload)
        record.stages_ms = {
            "generation": generation_ms, "compression": 1e3 * (encoded - encode_start),
            "network_edge_cloud": max(0.0, 1e3 * (done - encoded) - cloud["total_cloud"]),
            **{key: cloud[key] for key in ("decompression", "recognition", "other_cloud")},
        }
        record.end_to_end_ms = 1e3 * (done - start)

    async def pp_baseline(self, session: aiohttp.ClientSession, pixels: np.ndarray, record: ImageRecord) -> None:
        if self.protector is None:
            raise RuntimeError("pp-baseline runs an image protector on the phone: give the Phone a model bundle "
                               "and an image protector")
        start = time.perf_counter()
        perturbed = self.protector.pixels_for_links(self.protector.perturb(pixels[None]))
        await self._direct_to_cloud(session, perturbed, record, 1e3 * (time.perf_counter() - start), start)

    async def unprotected(self, session: aiohttp.ClientSession, pixels: np.ndarray, record: ImageRecord) -> None:
        start = time.perf_counter()
        await self._direct_to_cloud(session, to_unit_nchw(pixels[None]), record, 0.0, start)

    async def send(self, mode: str, session: aiohttp.ClientSession, pixels: np.ndarray, record: ImageRecord) -> None:
        handler = {"pmc2": self.pmc2, "pp-baseline": self.pp_baseline, "unprotected": self.unprotected}[mode]
        try:
            await handler(session, pixels, record)
        except (RequestFailed, aiohttp.ClientError, TimeoutError) as error:
            record.error = str(error) or type(error).__name__

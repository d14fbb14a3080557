"""The edge's blocking work for image protectors: protect the client's images and encode them for the cloud.

    uint8 [N,32,32,3] ──protector (by name, runtime.protection)──▶ x' (or x̂) ──link codec (by name)──▶ S2 payloads

Torch-free like the rest of the runtime, so the edge server, the serving benchmark and the evaluation's edge
cost all time the same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pmc2.runtime.link_codecs import LINK_CODECS, CodecContext, LinkCodec
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.protection import Protector, bundle_protectors
from pmc2.runtime.sessions import SessionSettings


@dataclass
class ProtectedBatch:
    perturbed: np.ndarray  # x' in [0, 1]
    payloads: list[bytes]
    generation_ms: float
    compression_ms: float


class EdgeProtector:
    """Every protector the bundle holds and every link codec of one edge, built once from the model bundle
    (g_s too, so the edge can show what the cloud will decode)."""

    def __init__(self, bundle: ModelBundle, settings: SessionSettings, jpeg_quality: int,
                 webp_quality: int | None) -> None:
        g_a, g_s = bundle.session("g_a", settings), bundle.session("g_s", settings)
        self.protectors = {name: Protector(bundle, settings, g_a=g_a, g_s=g_s, name=name)
                           for name in bundle_protectors(bundle, "image")}
        context = CodecContext(bundle, g_a=g_a, g_s=g_s, jpeg_quality=jpeg_quality, webp_quality=webp_quality)
        self.codecs: dict[str, LinkCodec] = {name: codec.build(context) for name, codec in LINK_CODECS.items()}

    def protect(self, images_uint8: np.ndarray, codec: str, protector: str) -> ProtectedBatch:
        start = time.perf_counter()
        link, chosen = self.codecs[codec], self.protectors[protector]
        perturbed = chosen.perturb(images_uint8)
        images = chosen.pixels_for_links(perturbed) if link.carries_pixels else perturbed
        generated = time.perf_counter()
        payloads = link.encode(images)
        done = time.perf_counter()
        return ProtectedBatch(perturbed, payloads, 1e3 * (generated - start), 1e3 * (done - generated))

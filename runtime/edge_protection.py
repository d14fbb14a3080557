"""The edge's blocking work for image protectors: protect the client's images and encode them for the cloud.

    uint8 [N,32,32,3] ──protector (by name, runtime.protection)──▶ x' (or x̂) ──link codec (by name)──▶ S2 batch

A neural link codes with the g_a of the protector's compressor (runtime.compressors), which the batch names.
Torch-free like the rest of the runtime, so the edge server, the serving benchmark and the evaluation's edge
cost all time the same code.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from pmc2.runtime.compressors import compressor_named
from pmc2.runtime.link_codecs import CodecContext, LinkCodec, build_codecs
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.protection import Protector, bundle_protectors
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.wire_format import EncodedBatch


@dataclass
class ProtectedBatch:
    perturbed: np.ndarray  # x' in [0, 1]
    batch: EncodedBatch  # what the cloud receives (its compressor: the protector's, for a neural link)
    generation_ms: float
    compression_ms: float


class EdgeProtector:
    """Every protector the bundle holds and every link codec of one edge for each compressor the bundle holds,
    built once from the model bundle (g_s too, so the edge can show what the cloud will decode)."""

    def __init__(self, bundle: ModelBundle, settings: SessionSettings, jpeg_quality: int,
                 webp_quality: int | None) -> None:
        session = functools.cache(functools.partial(bundle.session, settings=settings))
        self.protectors = {name: Protector(bundle, settings, name, session)
                           for name in bundle_protectors(bundle, "image")}
        self.codecs: dict[str, dict[str, LinkCodec]] = {}  # compressor → codec name → codec
        for compressor in bundle.compressors:
            g_a, g_s = compressor_named(compressor).models
            self.codecs[compressor] = build_codecs(CodecContext(
                bundle, compressor, g_a=session(g_a), g_s=session(g_s), jpeg_quality=jpeg_quality,
                webp_quality=webp_quality))

    def links_of(self, protector: str) -> tuple[str, ...]:
        """The link codecs ``protector``'s images can travel over (those that apply to its compressor)."""
        return tuple(self.codecs[self.protectors[protector].compressor])

    def link(self, codec: str, protector: str) -> LinkCodec:
        """Link codec ``codec`` as ``protector``'s images travel over it (a neural one: with its compressor)."""
        return self.codecs[self.protectors[protector].compressor][codec]

    def protect(self, images_uint8: np.ndarray, codec: str, protector: str) -> ProtectedBatch:
        start = time.perf_counter()
        link, chosen = self.link(codec, protector), self.protectors[protector]
        perturbed = chosen.perturb(images_uint8)
        images = chosen.pixels_for_links(perturbed) if link.carries_pixels else perturbed
        generated = time.perf_counter()
        batch = EncodedBatch(link.name, link.encode(images), len(images), link.compressor)
        done = time.perf_counter()
        return ProtectedBatch(perturbed, batch, 1e3 * (generated - start), 1e3 * (done - generated))

"""The cloud's blocking work: decode a batch with its link codec and classify it with the target."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pmc2.runtime.link_codecs import LINK_CODECS, CodecContext, LinkCodec
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.pipeline import classify
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.wire_format import EncodedBatch


@dataclass
class Recognition:
    labels: list[int]
    decompression_ms: float
    recognition_ms: float


class CloudRecognizer:
    """The target and every link codec's decoder, built once from the model bundle."""

    def __init__(self, bundle: ModelBundle, settings: SessionSettings, max_image_pixels: int) -> None:
        self.target = bundle.session("target", settings)
        self.class_names = bundle.class_names
        context = CodecContext(bundle, g_s=bundle.session("g_s", settings), max_image_pixels=max_image_pixels)
        self.codecs: dict[str, LinkCodec] = {name: codec.build(context) for name, codec in LINK_CODECS.items()}

    def recognize(self, batch: EncodedBatch) -> Recognition:
        start = time.perf_counter()
        images = self.codecs[batch.codec].decode(batch.payloads, batch.images)
        decoded = time.perf_counter()
        labels = classify(self.target, images)
        done = time.perf_counter()
        return Recognition(labels.tolist(), 1e3 * (decoded - start), 1e3 * (done - decoded))

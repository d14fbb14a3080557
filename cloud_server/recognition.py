"""The cloud's blocking work: decode a batch (neural / PNG / JPEG) and classify it with the target."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pmc2.runtime.image_codecs import decode_image_bytes
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.runtime.pipeline import build_codec, classify
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.wire_format import EncodedBatch

MIN_NEURAL_STREAM_BYTES = 4  # the rANS decoder reads a 32-bit state before anything else


class BadPayload(ValueError):
    """The request's images cannot be decoded; the message says why."""


@dataclass
class Recognition:
    labels: list[int]
    decompression_ms: float
    recognition_ms: float


class CloudRecognizer:
    def __init__(self, bundle: ModelBundle, settings: SessionSettings, max_image_pixels: int) -> None:
        self.target = bundle.session("target", settings)
        self.class_names = bundle.class_names
        self.neural = build_codec("neural", bundle, g_s=bundle.session("g_s", settings))
        self.max_image_pixels = max_image_pixels

    def _decode(self, batch: EncodedBatch) -> np.ndarray:
        if batch.codec == "neural-batch":
            if len(batch.payloads[0]) < MIN_NEURAL_STREAM_BYTES:
                raise BadPayload(f"corrupt neural bitstream: {len(batch.payloads[0])} bytes for {batch.images} images")
            return self.neural.decode_stream(batch.payloads[0], batch.images)
        if batch.codec == "neural":
            short = [i for i, p in enumerate(batch.payloads) if len(p) < MIN_NEURAL_STREAM_BYTES]
            if short:
                raise BadPayload(f"corrupt neural bitstream: image {short[0]} has {len(batch.payloads[short[0]])} bytes")
            return self.neural.decode(batch.payloads)
        images = []
        for index, payload in enumerate(batch.payloads):
            try:
                pixels = decode_image_bytes(payload, self.max_image_pixels)
            except ValueError as error:
                raise BadPayload(f"image {index}: {error}") from error
            if pixels.shape[:2] != (32, 32):
                raise BadPayload(f"image {index} is {pixels.shape[1]}x{pixels.shape[0]}; the target model takes 32x32")
            images.append(pixels)
        return to_unit_nchw(np.stack(images))

    def recognize(self, batch: EncodedBatch) -> Recognition:
        start = time.perf_counter()
        images = self._decode(batch)
        decoded = time.perf_counter()
        labels = classify(self.target, images)
        done = time.perf_counter()
        return Recognition(labels.tolist(), 1e3 * (decoded - start), 1e3 * (done - decoded))

"""The edge's blocking work: decode client images, perturb them, encode them for the cloud.

    JPEG/PNG bytes ──decode, fit to 32x32──▶ uint8 ──generator──▶ x' ──codec──▶ S2 payloads
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pmc2.runtime.image_codecs import Codec, decode_image_bytes
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.pipeline import build_codec, perturb, preprocess
from pmc2.runtime.sessions import SessionSettings

MODEL_SIZE = (32, 32)


class BadImage(ValueError):
    """A client image cannot be used; the message says why."""


def decode_client_images(payloads: list[bytes], max_pixels: int, resize_policy: str) -> np.ndarray:
    """uint8 [N,32,32,3] from the client's JPEG/PNG payloads."""
    images = []
    for index, payload in enumerate(payloads):
        try:
            pixels = decode_image_bytes(payload, max_pixels)
        except ValueError as error:
            raise BadImage(f"image {index}: {error}") from error
        if pixels.shape[:2] != MODEL_SIZE:
            if resize_policy == "reject":
                raise BadImage(f"image {index} is {pixels.shape[1]}x{pixels.shape[0]}; this edge accepts only 32x32")
            pixels = np.asarray(Image.fromarray(pixels).resize(MODEL_SIZE, Image.Resampling.BICUBIC))
        images.append(pixels)
    return np.stack(images)


@dataclass
class ProtectedBatch:
    payloads: list[bytes]
    generation_ms: float
    compression_ms: float


class EdgeProtector:
    """Generator and codecs of one edge, built once from the model bundle."""

    def __init__(self, bundle: ModelBundle, settings: SessionSettings, jpeg_quality: int) -> None:
        self.generator = bundle.session("generator", settings)
        g_a = bundle.session("g_a", settings)
        self.codecs: dict[str, Codec] = {
            name: build_codec(name, bundle, jpeg_quality, g_a=g_a) for name in ("neural", "png", "jpeg")
        }

    def protect(self, images_uint8: np.ndarray, codec: str) -> ProtectedBatch:
        start = time.perf_counter()
        perturbed = perturb(self.generator, preprocess(images_uint8))
        generated = time.perf_counter()
        if codec == "neural-batch":
            payloads = [self.codecs["neural"].encode_stream(perturbed)]
        else:
            payloads = self.codecs[codec].encode(perturbed)
        done = time.perf_counter()
        return ProtectedBatch(payloads, 1e3 * (generated - start), 1e3 * (done - generated))

"""What protecting and encoding cost the edge per image: the shipped ONNX models under onnxruntime.

    uint8 batch ──EdgeProtector.protect(codec, protector)──▶ generation_ms + compression_ms ──÷ batch──▶ ms/image
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pmc2.runtime.edge_protection import EdgeProtector
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.sessions import SessionSettings

BATCH = 256  # the edge's largest micro-batch


def median_ms_per_image(batch_ms: Callable[[np.ndarray], float], images_uint8: np.ndarray, repeats: int = 3,
                        batch: int = BATCH) -> float:
    """Median over ``repeats`` passes of ``batch_ms(images)`` / batch size, for batches of ``batch`` images (one
    batch of all of them if there are fewer)."""
    size = min(batch, len(images_uint8))
    return statistics.median(batch_ms(images_uint8[start : start + size]) / size
                             for _ in range(repeats) for start in range(0, len(images_uint8) - size + 1, size))


def edge_ms_per_image(bundle_folder: Path, protector: str, codecs: dict[str, dict], images_uint8: np.ndarray,
                      repeats: int = 3) -> dict[str, float]:
    """Median ms/image the edge spends protecting and encoding batches of ``BATCH`` images, per link codec;
    ``codecs`` maps a codec name to the quality settings it runs at (jpeg_quality, webp_quality)."""
    bundle, costs = ModelBundle.open(bundle_folder), {}
    for name, qualities in codecs.items():
        edge = EdgeProtector(bundle, SessionSettings(), qualities.get("jpeg_quality", 95), qualities.get("webp_quality"))
        edge.protect(images_uint8[:BATCH], name, protector)  # warm-up

        def batch_ms(batch: np.ndarray) -> float:
            protected = edge.protect(batch, name, protector)
            return protected.generation_ms + protected.compression_ms

        costs[name] = median_ms_per_image(batch_ms, images_uint8, repeats)
    return costs

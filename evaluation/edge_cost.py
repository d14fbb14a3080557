"""What protecting and encoding cost the edge per image: the shipped ONNX models under onnxruntime.

    uint8 batch ──EdgeProtector.protect(codec, protector)──▶ generation_ms + compression_ms ──÷ batch──▶ ms/image
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from pmc2.edge_server.protection import EdgeProtector
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.sessions import SessionSettings

BATCH = 256  # the edge's largest micro-batch


def edge_ms_per_image(bundle_folder: Path, protector: str, codecs: dict[str, dict], images_uint8: np.ndarray,
                      repeats: int = 3) -> dict[str, float]:
    """Median ms/image the edge spends protecting and encoding batches of ``BATCH`` images (fewer if there
    are fewer), per link codec;
    ``codecs`` maps a codec name to the quality settings it runs at (jpeg_quality, webp_quality)."""
    bundle, costs, size = ModelBundle.open(bundle_folder), {}, min(BATCH, len(images_uint8))
    for name, qualities in codecs.items():
        edge = EdgeProtector(bundle, SessionSettings(), qualities.get("jpeg_quality", 95), qualities.get("webp_quality"))
        edge.protect(images_uint8[:size], name, protector)  # warm-up
        samples = []
        for _ in range(repeats):
            for start in range(0, len(images_uint8) - size + 1, size):
                batch = edge.protect(images_uint8[start : start + size], name, protector)
                samples.append((batch.generation_ms + batch.compression_ms) / size)
        costs[name] = statistics.median(samples)
    return costs

"""The phone's side of the pictures: the JPEG it sends the edge (S1), and what the edge then receives.

The edge→cloud codecs are in ``runtime.link_codecs``; decoding is ``runtime.image_decoding``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pmc2.runtime.image_decoding import decode_image
from pmc2.value_ranges import JPEG_QUALITY


def jpeg_bytes(pixels: np.ndarray, quality: int) -> bytes:
    """One uint8 [H,W,3] image as the phone sends it: Pillow's JPEG at ``quality`` (4:2:0 chroma)."""
    JPEG_QUALITY.require(quality, "JPEG quality")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


PHONE_JPEG_QUALITY = 90  # the phone's JPEG (S1) in front of every edge input: training, evaluation and benchmarks


def through_phone_jpeg(images_uint8: np.ndarray, quality: int) -> np.ndarray:
    """uint8 [N,H,W,3] images after the phone's JPEG and the edge's decode (what the edge receives)."""
    return np.stack([decode_image(jpeg_bytes(pixels, quality)) for pixels in images_uint8])

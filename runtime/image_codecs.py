"""Standard image codecs for the edge→cloud link (Pillow), one image per payload.

Every codec maps float [N,3,H,W] images in [0, 1] to a list of byte strings and back, so the
neural codec (runtime.neural_codec) is a drop-in alternative.
"""

from __future__ import annotations

import io
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps

from pmc2.runtime.normalization import to_uint8_nhwc, to_unit_nchw


class Codec(Protocol):
    name: str

    def encode(self, images_unit: np.ndarray) -> list[bytes]: ...

    def decode(self, payloads: list[bytes]) -> np.ndarray: ...


MAX_IMAGE_PIXELS = 4096 * 4096


def decode_image_bytes(payload: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode one PNG/JPEG payload to uint8 [H,W,3]; ValueError for anything else or anything too big.

    The size is checked from the header, before any pixel is decompressed (decompression bombs);
    an EXIF orientation (phone photos) is applied, so the picture comes out upright.
    """
    if not payload:
        raise ValueError("empty image payload")
    try:
        with Image.open(io.BytesIO(payload)) as image:
            if image.format not in ("PNG", "JPEG"):
                raise ValueError(f"unsupported image format {image.format}; send PNG or JPEG")
            width, height = image.size
            if width * height > max_pixels:
                raise ValueError(f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
            image.load()
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"not a decodable image: {error}") from error


def jpeg_bytes(pixels: np.ndarray, quality: int) -> bytes:
    """One uint8 [H,W,3] image as the phone sends it: Pillow's JPEG at ``quality`` (4:2:0 chroma)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def through_phone_jpeg(images_uint8: np.ndarray, quality: int) -> np.ndarray:
    """uint8 [N,H,W,3] images after the phone's JPEG and the edge's decode (what the edge receives)."""
    return np.stack([decode_image_bytes(jpeg_bytes(pixels, quality)) for pixels in images_uint8])


class PillowCodec:
    """Encode each image with Pillow in a given format."""

    def __init__(self, name: str, pillow_format: str, **save_options: object) -> None:
        self.name, self.pillow_format, self.save_options = name, pillow_format, save_options

    def encode(self, images_unit: np.ndarray) -> list[bytes]:
        payloads = []
        for pixels in to_uint8_nhwc(images_unit):
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format=self.pillow_format, **self.save_options)
            payloads.append(buffer.getvalue())
        return payloads

    def decode(self, payloads: list[bytes]) -> np.ndarray:
        return to_unit_nchw(np.stack([decode_image_bytes(payload) for payload in payloads]))


def png_codec() -> PillowCodec:
    """Lossless PNG, optimize=True."""
    return PillowCodec("png", "PNG", optimize=True)


def jpeg_codec(quality: int = 95, subsampling: str = "4:4:4") -> PillowCodec:
    """JPEG with chroma subsampling off (4:4:4) unless asked otherwise."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    name = "jpeg" if subsampling == "4:4:4" else f"jpeg{subsampling.replace(':', '')}"
    return PillowCodec(name, "JPEG", quality=quality, subsampling=subsampling, optimize=True)

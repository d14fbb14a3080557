"""The one image decoder: PNG / JPEG / WebP bytes to uint8 pixels, for the edge, the cloud and the codecs.

    payloads ──header check (format, pixel count)──▶ decode ──EXIF orientation──▶ RGB ──fit to size──▶ uint8 [N,H,W,3]

The pixel count is checked from the header before anything is decompressed (decompression bombs); an EXIF
orientation (phone photos) is applied, so the picture comes out upright. Every failure is a typed
``ImageError`` naming the image it concerns.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP")
ACCEPTED = f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]}"  # for messages
MAX_IMAGE_PIXELS = 4096 * 4096
RESIZE_POLICIES = ("resize", "reject")


class ImageError(ValueError):
    """An image payload cannot be used; the message says which one and why."""


class NotAnImage(ImageError):
    pass


class ImageTooLarge(ImageError):
    pass


class WrongImageSize(ImageError):
    pass


def decode_image(payload: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """One payload to uint8 [H, W, 3], upright."""
    if not payload:
        raise NotAnImage("empty image payload")
    try:
        with Image.open(io.BytesIO(payload)) as image:
            if image.format not in FORMATS:
                raise NotAnImage(f"unsupported image format {image.format}; send {ACCEPTED}")
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
            image.load()
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except ImageError:
        raise
    except UnidentifiedImageError as error:  # its text shows a Python object, not words for a person
        raise NotAnImage(f"not a decodable image: expected {ACCEPTED}") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise NotAnImage(f"not a decodable image: {error}") from error


def decode_images(payloads: list[bytes], max_pixels: int = MAX_IMAGE_PIXELS, size: tuple[int, int] = (32, 32),
                  policy: str = "reject") -> np.ndarray:
    """uint8 [N, height, width, 3]; other sizes are resized (bicubic) or refused, as ``policy`` says."""
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"policy must be one of {', '.join(RESIZE_POLICIES)}, got {policy!r}")
    height, width = size
    images = []
    for index, payload in enumerate(payloads):
        try:
            pixels = decode_image(payload, max_pixels)
        except ImageError as error:
            raise type(error)(f"image {index}: {error}") from error
        if pixels.shape[:2] != (height, width):
            if policy == "reject":
                raise WrongImageSize(f"image {index} is {pixels.shape[1]}x{pixels.shape[0]}; only {width}x{height} "
                                     "is accepted here")
            pixels = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BICUBIC))
        images.append(pixels)
    return np.stack(images)

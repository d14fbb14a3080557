"""The one definition of the input normalisation and the uint8 <-> NCHW conversions.

    uint8 HWC RGB --to_unit_nchw--> float [0,1] NCHW --normalize--> (x - mean) / std
"""

from __future__ import annotations

import numpy as np

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)

_MEAN = np.asarray(CIFAR10_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
_STD = np.asarray(CIFAR10_STD, dtype=np.float32).reshape(1, 3, 1, 1)


def to_unit_nchw(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,3] -> float32 [N,3,H,W] in [0, 1]."""
    if images_uint8.dtype != np.uint8 or images_uint8.ndim != 4 or images_uint8.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N,H,W,3], got {images_uint8.dtype} {images_uint8.shape}")
    return np.ascontiguousarray(images_uint8.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def to_uint8_nhwc(images_unit: np.ndarray) -> np.ndarray:
    """float [N,3,H,W] in [0, 1] -> uint8 [N,H,W,3], rounding to nearest."""
    scaled = np.clip(np.rint(images_unit * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(scaled.transpose(0, 2, 3, 1))


def normalize(images_unit: np.ndarray) -> np.ndarray:
    """[0, 1] NCHW -> normalised NCHW float32."""
    return ((images_unit - _MEAN) / _STD).astype(np.float32)


def denormalize(images_normalized: np.ndarray) -> np.ndarray:
    """Normalised NCHW -> [0, 1] NCHW float32."""
    return (images_normalized * _STD + _MEAN).astype(np.float32)

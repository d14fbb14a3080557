"""Feature tensors on the wire (FaceMix's mixtures and the cloud's outputs): NumPy's .npy format, float16.

    float32 [N, …] ──to_npy (float16)──▶ application/x-npy ──from_npy (dtype, item shape, 1 ≤ N ≤ max)──▶ float32

Read with ``allow_pickle=False``: a payload holds numbers or is refused with TensorPayloadError.
"""

from __future__ import annotations

import io
from tokenize import TokenError

import numpy as np

CONTENT_TYPE = "application/x-npy"
WIRE_DTYPE = np.float16


class TensorPayloadError(ValueError):
    """The body is not a float16 .npy array of the expected item shape and count."""


def to_npy(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(values, dtype=WIRE_DTYPE), allow_pickle=False)
    return buffer.getvalue()


def from_npy(data: bytes, item_shape: tuple[int, ...], max_items: int) -> np.ndarray:
    """The float32 array of a .npy payload of ``1..max_items`` items of ``item_shape``. The header is checked
    before any array is made, so a header that claims a huge shape costs nothing."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran_order, dtype = read_header[version](stream)
    except (ValueError, SyntaxError, TokenError, TypeError) as error:  # what numpy's header parser raises on garbage
        raise TensorPayloadError(f"not a .npy array: {error}") from None
    if dtype != WIRE_DTYPE or fortran_order:
        raise TensorPayloadError(f"expected C-ordered {np.dtype(WIRE_DTYPE).name} values, got {dtype}")
    if len(shape) != len(item_shape) + 1 or tuple(shape[1:]) != tuple(item_shape):
        raise TensorPayloadError(f"expected shape [N, {', '.join(map(str, item_shape))}], got {list(shape)}")
    if not 1 <= shape[0] <= max_items:
        raise TensorPayloadError(f"{shape[0]} items; allowed 1..{max_items}")
    body = data[stream.tell():]
    if len(body) != int(np.prod(shape)) * dtype.itemsize:
        raise TensorPayloadError(f"the header promises {int(np.prod(shape)) * dtype.itemsize} bytes of values, "
                                 f"{len(body)} follow")
    values = np.frombuffer(body, dtype=dtype).reshape(shape)
    if not np.isfinite(values).all():
        raise TensorPayloadError("the values must be finite")
    return values.astype(np.float32)

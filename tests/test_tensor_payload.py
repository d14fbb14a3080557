"""Feature tensors on the wire: float16 .npy, checked header first (shape, count, dtype, length), never pickled."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from pmc2.runtime.tensor_payload import TensorPayloadError, from_npy, to_npy

SHAPE = (64, 16, 16)


def _header_only(shape: tuple[int, ...], descr: str = "<f2") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_round_trip_is_float16_exact() -> None:
    values = np.random.default_rng(0).standard_normal((3, *SHAPE)).astype(np.float32)
    decoded = from_npy(to_npy(values), SHAPE, 8)
    np.testing.assert_array_equal(decoded, values.astype(np.float16).astype(np.float32))
    assert decoded.dtype == np.float32 and len(to_npy(values)) == 128 + values.size * 2


@pytest.mark.parametrize(("payload", "message"), [
    (b"", "not a .npy array"),
    (to_npy(np.zeros((2, *SHAPE)))[:-5], "promises 65536 bytes of values, 65531 follow"),
    (_header_only((10**9, *SHAPE)), "allowed 1..8"),  # refused before anything of that size is made
    (_header_only((0, *SHAPE)), "allowed 1..8"),
    (to_npy(np.zeros((1, 3, 16, 16))), "expected shape [N, 64, 16, 16]"),
    (_header_only((1, *SHAPE), "<f4") + bytes(4 * int(np.prod(SHAPE))), "expected C-ordered float16"),
    (_header_only((1, *SHAPE), "|O"), "got object"),  # objects (pickles) are never read
    (to_npy(np.full((1, *SHAPE), np.nan)), "finite"),
    # a header whose brackets do not close (found by the fuzzer): numpy's parser raises a TokenError
    (to_npy(np.zeros((1, *SHAPE))).replace(b"(1, 64, 16, 16)", b"(1, 64, [6, 16)"), "not a .npy array"),
])
def test_bad_payloads_are_refused_with_the_reason(payload: bytes, message: str) -> None:
    with pytest.raises(TensorPayloadError, match=re.escape(message)):
        from_npy(payload, SHAPE, 8)

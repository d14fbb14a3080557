"""The edge→cloud wire format round-trips and rejects what it does not understand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmc2.runtime.link_codecs import LINK_CODECS
from pmc2.runtime.wire_format import EncodedBatch, WireFormatError

PER_IMAGE_CODECS = sorted(name for name, codec in LINK_CODECS.items() if not codec.one_stream)

CRC = b"\x00\x00\x00\x00"  # a checksum that matches none of the bodies below


@given(st.sampled_from(PER_IMAGE_CODECS), st.lists(st.binary(max_size=64), min_size=1, max_size=40))
def test_round_trip(codec: str, payloads: list[bytes]) -> None:
    assert EncodedBatch.from_bytes(EncodedBatch(codec, payloads).to_bytes()) == EncodedBatch(codec, payloads)


@given(st.binary(max_size=64), st.integers(1, 0xFFFF))
def test_one_stream_batch_round_trips_with_its_image_count(stream: bytes, images: int) -> None:
    batch = EncodedBatch.from_bytes(EncodedBatch("neural-batch", [stream], images).to_bytes())
    assert batch == EncodedBatch("neural-batch", [stream], images) and batch.images == images


@pytest.mark.parametrize(("batch", "message"), [
    (EncodedBatch("neural-batch", [b"ab", b"cd"], 2), "exactly one stream"),
    (EncodedBatch("neural-batch", [b"ab"]), "exactly one stream"),
    (EncodedBatch("png", [b"ab", b"cd"], 3), "one payload per image"),
])
def test_inconsistent_batches_are_refused(batch: EncodedBatch, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        batch.to_bytes()


@given(st.binary(max_size=200))
def test_arbitrary_bytes_either_parse_or_raise_wire_format_error(data: bytes) -> None:
    try:
        EncodedBatch.from_bytes(data)
    except WireFormatError:
        pass


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PMC", "shorter"),
        (b"JPEG\x01\x01\x00\x01" + CRC + b"\x00\x00\x00\x00", "magic"),
        (b"PMC2\x02\x01\x00\x01" + CRC + b"\x00\x00\x00\x00", "version"),
        (b"PMC2\x01\x09\x00\x01" + CRC + b"\x00\x00\x00\x00", "codec"),
        (b"PMC2\x01\x01\x00\x00" + CRC, "batch of 0"),
        (b"PMC2\x01\x01\x00\x02" + CRC + b"\x00\x00", "length table"),
        (b"PMC2\x01\x01\x00\x01" + CRC + b"\x00\x00\x00\x05abc", "lengths add up"),
        (b"PMC2\x01\x01\x00\x01" + CRC + b"\x00\x00\x00\x01ab", "lengths add up"),
        (b"PMC2\x01\x01\x00\x01" + CRC + b"\x00\x00\x00\x01a", "CRC-32"),
    ],
)
def test_malformed_payloads_are_named(data: bytes, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        EncodedBatch.from_bytes(data)


def test_batch_size_limit() -> None:
    data = EncodedBatch("png", [b"x"] * 5).to_bytes()
    with pytest.raises(WireFormatError, match="allowed 1..4"):
        EncodedBatch.from_bytes(data, max_images=4)


def test_flipped_bit_is_detected() -> None:
    data = bytearray(EncodedBatch("neural", [b"\x10\x20\x30\x40\x50\x60\x70\x80"]).to_bytes())
    data[-3] ^= 0x04
    with pytest.raises(WireFormatError, match="corrupted"):
        EncodedBatch.from_bytes(bytes(data))


"""The edge→cloud wire format round-trips and rejects what it does not understand; a batch of the bundle's own
compressor keeps the bytes it had before compressors had ids."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmc2.runtime.compressors import (COMPRESSORS, DEFAULT_COMPRESSOR, WIRE_IDS, UnknownCompressor, compressor_named,
                                      compressor_with_wire_id)
from pmc2.runtime.link_codecs import LINK_CODECS, LinkCodec, register
from pmc2.runtime.wire_format import EncodedBatch, WireFormatError

PER_IMAGE_CODECS = sorted(name for name, codec in LINK_CODECS.items() if not codec.one_stream)
LATENT_CODECS = sorted(name for name, codec in LINK_CODECS.items() if not codec.carries_pixels)
PIXEL_CODECS = sorted(name for name, codec in LINK_CODECS.items() if codec.carries_pixels)
OTHER_COMPRESSORS = sorted(set(COMPRESSORS) - {DEFAULT_COMPRESSOR})
CODEC_IDS_BEFORE_COMPRESSORS = {"neural": 1, "png": 2, "jpeg": 3, "neural-batch": 4, "webp": 5}

CRC = b"\x00\x00\x00\x00"  # a checksum that matches none of the bodies below


@given(st.sampled_from(PER_IMAGE_CODECS), st.lists(st.binary(max_size=64), min_size=1, max_size=40))
def test_round_trip(codec: str, payloads: list[bytes]) -> None:
    assert EncodedBatch.from_bytes(EncodedBatch(codec, payloads).to_bytes()) == EncodedBatch(codec, payloads)


@given(st.binary(max_size=64), st.integers(1, 0xFFFF))
def test_one_stream_batch_round_trips_with_its_image_count(stream: bytes, images: int) -> None:
    batch = EncodedBatch.from_bytes(EncodedBatch("neural-batch", [stream], images).to_bytes())
    assert batch == EncodedBatch("neural-batch", [stream], images) and batch.images == images


@given(st.sampled_from(LATENT_CODECS), st.sampled_from(OTHER_COMPRESSORS), st.binary(max_size=64),
       st.integers(1, 300))
def test_a_latent_batch_round_trips_with_another_compressor(codec: str, compressor: str, stream: bytes,
                                                             images: int) -> None:
    one_stream = LINK_CODECS[codec].one_stream
    batch = EncodedBatch(codec, [stream] if one_stream else [stream] * images, images if one_stream else None,
                         compressor)
    data = batch.to_bytes()
    assert EncodedBatch.from_bytes(data) == batch
    assert data[5] == LINK_CODECS[codec].wire_id | compressor_named(compressor).wire_id << 4


@pytest.mark.parametrize("codec", sorted(CODEC_IDS_BEFORE_COMPRESSORS))
def test_the_bundles_own_compressor_keeps_the_layout_from_before_compressors(codec: str) -> None:
    """Byte 5 is the codec id alone, as it was: every batch of the bundle's own compressor is unchanged (for the
    codecs there were then; a later codec's batches have the same layout, under its own id)."""
    payloads, images = ([b"ab"], 3) if LINK_CODECS[codec].one_stream else ([b"ab", b"cde"], 2)
    body = b"\x00\x00\x00\x02" + (b"" if len(payloads) == 1 else b"\x00\x00\x00\x03") + b"".join(payloads)
    header = b"PMC2\x01" + bytes([CODEC_IDS_BEFORE_COMPRESSORS[codec], 0, images]) + zlib.crc32(body).to_bytes(4, "big")
    assert EncodedBatch(codec, payloads, images).to_bytes() == header + body
    assert EncodedBatch(codec, payloads, images, DEFAULT_COMPRESSOR).to_bytes() == header + body
    assert EncodedBatch.from_bytes(header + body).compressor == DEFAULT_COMPRESSOR


def test_wire_ids_fit_their_four_bits_and_the_bundles_own_compressor_is_zero() -> None:
    assert {codec.wire_id for codec in LINK_CODECS.values()} <= set(WIRE_IDS)
    assert {spec.wire_id for spec in COMPRESSORS.values()} <= set(WIRE_IDS) and len(WIRE_IDS) == 16
    assert compressor_named(DEFAULT_COMPRESSOR).wire_id == 0
    assert len({spec.wire_id for spec in COMPRESSORS.values()}) == len(COMPRESSORS)
    with pytest.raises(UnknownCompressor, match="choose from"):
        compressor_named("jpeg2000")
    with pytest.raises(UnknownCompressor, match="unknown compressor id 15"):
        compressor_with_wire_id(15)

    class WideLink(LinkCodec):
        name, wire_id, report_label = "wide", 16, "wide"

    with pytest.raises(ValueError, match="4 bits"):
        register(WideLink)
    assert "wide" not in LINK_CODECS


@pytest.mark.parametrize(("batch", "message"), [
    *((EncodedBatch(codec, [b"ab"], 1, compressor), "carries pixels") for codec in PIXEL_CODECS
      for compressor in OTHER_COMPRESSORS),
    (EncodedBatch("neural", [b"ab"], 1, "jpeg2000"), "unknown compressor 'jpeg2000'"),
])
def test_batches_naming_a_wrong_compressor_are_refused(batch: EncodedBatch, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        batch.to_bytes()


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
        (b"PMC2\x01\xf1\x00\x01" + CRC + b"\x00\x00\x00\x00", "unknown compressor id 15"),
        (b"PMC2\x01\x12\x00\x01" + CRC + b"\x00\x00\x00\x00", "png batch carries pixels"),
        (b"PMC2\x01\x13\x00\x01" + CRC + b"\x00\x00\x00\x00", "jpeg batch carries pixels"),
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


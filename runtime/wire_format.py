"""The edge→cloud (and client→cloud) payload: a batch of encoded images, version 1.

    offset  size  field
    0       4     magic b"PMC2"
    4       1     version = 1
    5       1     low 4 bits: codec id, the link codec's ``wire_id`` (runtime.link_codecs);
                  high 4 bits: compressor id, the ``wire_id`` of the compressor whose g_a coded a neural
                  codec's latents (runtime.compressors; 0, the bundle's own, is the only one a pixel codec names)
    6       2     image count N (big-endian, 1..65535)
    8       4     CRC-32 of everything after the header (big-endian)
    12      4·P   length of each payload (big-endian u32); P = N, except P = 1 for one-stream codecs
    12+4P   …     the payloads, back to back; nothing may follow

A one-stream codec (e.g. "neural-batch") carries all N images in one payload (a rANS stream whose flush
is paid once per batch); every image's latent has the same size, so N is all it takes to split it.

The CRC lets a receiver tell a corrupted stream from a valid one (a damaged rANS stream would
otherwise decode silently to a wrong latent). Byte 5 held the codec id alone before compressors had ids;
the bundle's own compressor has id 0, so its batches are byte for byte what they were.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pmc2.runtime.compressors import (DEFAULT_COMPRESSOR, WIRE_ID_BITS, CompressorSpec, UnknownCompressor,
                                      compressor_named, compressor_with_wire_id)
from pmc2.runtime.link_codecs import LinkCodec, UnknownCodec, codec_named, codec_with_wire_id

MAGIC = b"PMC2"
VERSION = 1
_HEADER = struct.Struct(">4sBBHI")
CONTENT_TYPE = "application/x-pmc2"
Found = TypeVar("Found")


class WireFormatError(ValueError):
    """The payload is not a valid version-1 PMC² batch."""


def _registered(lookup: Callable[[object], Found], key: object) -> Found:
    """``lookup(key)``, an unknown codec or compressor reported as a WireFormatError."""
    try:
        return lookup(key)
    except (UnknownCodec, UnknownCompressor) as error:
        raise WireFormatError(str(error)) from None


def _check_pairing(codec: type[LinkCodec], compressor: CompressorSpec) -> None:
    if codec.carries_pixels and compressor.name != DEFAULT_COMPRESSOR:
        raise WireFormatError(f"a {codec.name} batch carries pixels and names no compressor, not {compressor.name!r}")


@dataclass(frozen=True)
class EncodedBatch:
    """``payloads``: one per image, or a single stream holding ``image_count`` images (neural-batch);
    ``compressor``: whose g_a coded a neural codec's latents (runtime.compressors)."""

    codec: str
    payloads: list[bytes]
    image_count: int | None = None
    compressor: str = DEFAULT_COMPRESSOR

    @property
    def one_stream(self) -> bool:
        return codec_named(self.codec).one_stream

    @property
    def images(self) -> int | None:
        return self.image_count if self.one_stream else len(self.payloads)

    def to_bytes(self) -> bytes:
        codec, compressor = _registered(codec_named, self.codec), _registered(compressor_named, self.compressor)
        _check_pairing(codec, compressor)
        if codec.one_stream and (len(self.payloads) != 1 or self.image_count is None):
            raise WireFormatError(f"{self.codec} carries exactly one stream and an image count")
        if not codec.one_stream and self.image_count not in (None, len(self.payloads)):
            raise WireFormatError(f"{self.codec} carries one payload per image: {len(self.payloads)} != {self.image_count}")
        if not 1 <= (self.images or 0) <= 0xFFFF:
            raise WireFormatError(f"a batch holds 1..65535 images, not {self.images}")
        body = struct.pack(f">{len(self.payloads)}I", *map(len, self.payloads)) + b"".join(self.payloads)
        ids = codec.wire_id | compressor.wire_id << WIRE_ID_BITS
        return _HEADER.pack(MAGIC, VERSION, ids, self.images, zlib.crc32(body)) + body

    @classmethod
    def from_bytes(cls, data: bytes, max_images: int = 0xFFFF) -> "EncodedBatch":
        if len(data) < _HEADER.size:
            raise WireFormatError(f"payload of {len(data)} bytes is shorter than the {_HEADER.size}-byte header")
        magic, version, ids, count, checksum = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise WireFormatError(f"bad magic {magic!r}, expected {MAGIC!r}")
        if version != VERSION:
            raise WireFormatError(f"unsupported wire-format version {version}, expected {VERSION}")
        codec = _registered(codec_with_wire_id, ids & ((1 << WIRE_ID_BITS) - 1))
        compressor = _registered(compressor_with_wire_id, ids >> WIRE_ID_BITS)
        _check_pairing(codec, compressor)
        if count == 0 or count > max_images:
            raise WireFormatError(f"batch of {count} images; allowed 1..{max_images}")
        entries = 1 if codec.one_stream else count
        offset = _HEADER.size + 4 * entries
        if len(data) < offset:
            raise WireFormatError("payload ends inside the length table")
        lengths = struct.unpack_from(f">{entries}I", data, _HEADER.size)
        if offset + sum(lengths) != len(data):
            raise WireFormatError(f"lengths add up to {sum(lengths)} bytes but {len(data) - offset} follow the table")
        if zlib.crc32(memoryview(data)[_HEADER.size :]) != checksum:
            raise WireFormatError("CRC-32 mismatch: the payload is corrupted")
        payloads = []
        for length in lengths:
            payloads.append(data[offset : offset + length])
            offset += length
        return cls(codec.name, payloads, count if codec.one_stream else None, compressor.name)

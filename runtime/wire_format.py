"""The edge→cloud (and client→cloud) payload: a batch of encoded images, version 1.

    offset  size  field
    0       4     magic b"PMC2"
    4       1     version = 1
    5       1     codec id: 1 neural, 2 png, 3 jpeg, 4 neural-batch
    6       2     image count N (big-endian, 1..65535)
    8       4     CRC-32 of everything after the header (big-endian)
    12      4·P   length of each payload (big-endian u32); P = N, except P = 1 for neural-batch
    12+4P   …     the payloads, back to back; nothing may follow

"neural-batch" carries all N images in one rANS stream (the coder's flush is paid once per batch
instead of once per image); every image's latent has the same size, so N is all it takes to split it.

The CRC lets a receiver tell a corrupted stream from a valid one (a damaged rANS stream would
otherwise decode silently to a wrong latent).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"PMC2"
VERSION = 1
CODEC_IDS = {"neural": 1, "png": 2, "jpeg": 3, "neural-batch": 4}
ONE_STREAM_CODECS = frozenset({"neural-batch"})
CODEC_NAMES = {value: key for key, value in CODEC_IDS.items()}
_HEADER = struct.Struct(">4sBBHI")
CONTENT_TYPE = "application/x-pmc2"


class WireFormatError(ValueError):
    """The payload is not a valid version-1 PMC² batch."""


@dataclass(frozen=True)
class EncodedBatch:
    """``payloads``: one per image, or a single stream holding ``image_count`` images (neural-batch)."""

    codec: str
    payloads: list[bytes]
    image_count: int | None = None

    @property
    def images(self) -> int | None:
        return self.image_count if self.codec in ONE_STREAM_CODECS else len(self.payloads)

    def to_bytes(self) -> bytes:
        if self.codec not in CODEC_IDS:
            raise WireFormatError(f"unknown codec {self.codec!r}")
        if self.codec in ONE_STREAM_CODECS and (len(self.payloads) != 1 or self.image_count is None):
            raise WireFormatError(f"{self.codec} carries exactly one stream and an image count")
        if self.codec not in ONE_STREAM_CODECS and self.image_count not in (None, len(self.payloads)):
            raise WireFormatError(f"{self.codec} carries one payload per image: {len(self.payloads)} != {self.image_count}")
        if not 1 <= (self.images or 0) <= 0xFFFF:
            raise WireFormatError(f"a batch holds 1..65535 images, not {self.images}")
        body = struct.pack(f">{len(self.payloads)}I", *map(len, self.payloads)) + b"".join(self.payloads)
        return _HEADER.pack(MAGIC, VERSION, CODEC_IDS[self.codec], self.images, zlib.crc32(body)) + body

    @classmethod
    def from_bytes(cls, data: bytes, max_images: int = 0xFFFF) -> "EncodedBatch":
        if len(data) < _HEADER.size:
            raise WireFormatError(f"payload of {len(data)} bytes is shorter than the {_HEADER.size}-byte header")
        magic, version, codec_id, count, checksum = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise WireFormatError(f"bad magic {magic!r}, expected {MAGIC!r}")
        if version != VERSION:
            raise WireFormatError(f"unsupported wire-format version {version}, expected {VERSION}")
        if codec_id not in CODEC_NAMES:
            raise WireFormatError(f"unknown codec id {codec_id}")
        if count == 0 or count > max_images:
            raise WireFormatError(f"batch of {count} images; allowed 1..{max_images}")
        codec = CODEC_NAMES[codec_id]
        entries = 1 if codec in ONE_STREAM_CODECS else count
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
        return cls(codec, payloads, count if codec in ONE_STREAM_CODECS else None)

"""The edge→cloud (and client→cloud) payload: a batch of encoded images, version 1.

    offset  size  field
    0       4     magic b"PMC2"
    4       1     version = 1
    5       1     codec id: 1 neural, 2 png, 3 jpeg
    6       2     image count N (big-endian, 1..65535)
    8       4     CRC-32 of everything after the header (big-endian)
    12      4·N   length of each encoded image (big-endian u32)
    12+4N   …     the encoded images, back to back; nothing may follow

The CRC lets a receiver tell a corrupted stream from a valid one (a damaged rANS stream would
otherwise decode silently to a wrong latent).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"PMC2"
VERSION = 1
CODEC_IDS = {"neural": 1, "png": 2, "jpeg": 3}
CODEC_NAMES = {value: key for key, value in CODEC_IDS.items()}
_HEADER = struct.Struct(">4sBBHI")
CONTENT_TYPE = "application/x-pmc2"


class WireFormatError(ValueError):
    """The payload is not a valid version-1 PMC² batch."""


@dataclass(frozen=True)
class EncodedBatch:
    codec: str
    payloads: list[bytes]

    def to_bytes(self) -> bytes:
        if self.codec not in CODEC_IDS:
            raise WireFormatError(f"unknown codec {self.codec!r}")
        if not 1 <= len(self.payloads) <= 0xFFFF:
            raise WireFormatError(f"a batch holds 1..65535 images, not {len(self.payloads)}")
        body = struct.pack(f">{len(self.payloads)}I", *map(len, self.payloads)) + b"".join(self.payloads)
        return _HEADER.pack(MAGIC, VERSION, CODEC_IDS[self.codec], len(self.payloads), zlib.crc32(body)) + body

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
        offset = _HEADER.size + 4 * count
        if len(data) < offset:
            raise WireFormatError("payload ends inside the length table")
        lengths = struct.unpack_from(f">{count}I", data, _HEADER.size)
        if offset + sum(lengths) != len(data):
            raise WireFormatError(f"lengths add up to {sum(lengths)} bytes but {len(data) - offset} follow the table")
        if zlib.crc32(memoryview(data)[_HEADER.size :]) != checksum:
            raise WireFormatError("CRC-32 mismatch: the payload is corrupted")
        payloads = []
        for length in lengths:
            payloads.append(data[offset : offset + length])
            offset += length
        return cls(CODEC_NAMES[codec_id], payloads)

"""CompressAI's rANS coder and the EntropyBottleneck's integer tables, without torch.

The ``ans`` extension of the compressai wheel is loaded straight from its file, so the
``compressai`` package (which imports torch) is never executed.

    encode: symbols = round(y − medians) ──rANS(cdf[channel])──▶ bytes
    decode: bytes ──rANS⁻¹(cdf[channel])──▶ symbols ──+ medians──▶ ŷ
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np


@lru_cache(maxsize=1)
def load_ans() -> ModuleType:
    """Import ``compressai/ans*.so`` by file location, bypassing ``compressai/__init__.py``."""
    package = importlib.util.find_spec("compressai")
    if package is None or not package.submodule_search_locations:
        raise ImportError("the compressai wheel is not installed (needed only for its rANS extension)")
    folder = Path(next(iter(package.submodule_search_locations)))
    candidates = [folder / f"ans{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    found = [path for path in candidates if path.exists()]
    if not found:
        raise ImportError(f"no compiled ans extension in {folder}")
    spec = importlib.util.spec_from_file_location("compressai.ans", found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class EntropyTables:
    """Per-channel quantised CDFs of a FactorizedPrior's EntropyBottleneck, plus its medians."""

    quantized_cdf: np.ndarray  # int32 [C, max_length]
    cdf_length: np.ndarray  # int32 [C]
    offset: np.ndarray  # int32 [C]
    medians: np.ndarray  # float32 [C]

    @classmethod
    def load(cls, path: Path) -> "EntropyTables":
        with np.load(path) as archive:
            return cls(*(archive[name] for name in ("quantized_cdf", "cdf_length", "offset", "medians")))

    def save(self, path: Path) -> None:
        with open(path, "wb") as handle:  # a file handle keeps np.savez from touching the name
            np.savez(handle, quantized_cdf=self.quantized_cdf, cdf_length=self.cdf_length,
                     offset=self.offset, medians=self.medians)

    @property
    def channels(self) -> int:
        return len(self.medians)


def decoder_safe(stream: bytes, symbols: int) -> bytes:
    """``stream`` followed by enough zero bytes that CompressAI's decoder cannot read past the buffer.

    The C++ decoder reads 32-bit words with no bounds check, so a short or corrupted stream would make it
    read (and crash) beyond the end. It reads two words to start and at most one per step, where a step
    is a symbol, or a 4-bit read of the bypass code of an out-of-range value. Once the stream's own bytes
    are used up it reads zeros, which end every bypass run at once; before that, each 4-bit value of 15
    taken from the stream's bits (at most 2·len + 16 of them, with the 64-bit state) lengthens a run by
    one step plus at most 15 more. So 2 + 17·symbols + 16·(2·len + 16) words always suffice; a valid
    stream is decoded exactly as before (the decoder never reaches the zeros)."""
    words = 2 + 17 * symbols + 16 * (2 * len(stream) + 16)
    return stream + bytes(4 * words)


MIN_STREAM_SYMBOLS = 4


class RansCoder:
    """rANS streams over a latent of shape [N, C, H, W]: one per image, as CompressAI writes them, or
    one for a whole batch (the coder's final-state flush, ~4-8 bytes, is then paid once per batch).

    CompressAI's encoder sizes its output at one 32-bit word per symbol, then writes its 64-bit final state. A
    symbol carries at most 16 bits (the tables' precision), so N symbols need at most N/2 + 2 words: an empty
    batch or a one-element latent overruns the buffer and corrupts the heap (the process dies). Streams of
    fewer than ``MIN_STREAM_SYMBOLS`` symbols, a margin above that bound, are refused before the encoder sees them."""

    def __init__(self, tables: EntropyTables) -> None:
        ans = load_ans()
        self.tables = tables
        self._encoder, self._decoder = ans.RansEncoder(), ans.RansDecoder()
        self._cdf = tables.quantized_cdf.tolist()
        self._lengths = tables.cdf_length.astype(np.int32).tolist()
        self._offsets = tables.offset.astype(np.int32).tolist()
        self._medians = tables.medians.astype(np.float32).reshape(1, -1, 1, 1)

    def _indexes(self, height: int, width: int, images: int = 1) -> list[int]:
        return np.tile(np.repeat(np.arange(self.tables.channels, dtype=np.int32), height * width), images).tolist()

    def _check(self, latent: np.ndarray, images_per_stream: int) -> None:
        if latent.ndim != 4 or latent.shape[1] != self.tables.channels:
            raise ValueError(f"latent must be [N,{self.tables.channels},H,W], got {latent.shape}")
        if images_per_stream * int(np.prod(latent.shape[1:])) < MIN_STREAM_SYMBOLS:
            raise ValueError(f"a rANS stream of {images_per_stream} latent(s) of shape {latent.shape[1:]} would hold fewer "
                             f"than {MIN_STREAM_SYMBOLS} symbols, too few for CompressAI's encoder")

    def symbols(self, latent: np.ndarray) -> np.ndarray:
        """round(y − medians) as int32, rounding half to even like torch.round."""
        return np.rint(latent - self._medians).astype(np.int32)

    def encode(self, latent: np.ndarray) -> list[bytes]:
        self._check(latent, 1)
        indexes = self._indexes(*latent.shape[2:])
        return [
            self._encoder.encode_with_indexes(row.reshape(-1).tolist(), indexes, self._cdf, self._lengths, self._offsets)
            for row in self.symbols(latent)
        ]

    def decode(self, streams: list[bytes], latent_size: tuple[int, int]) -> np.ndarray:
        """ŷ [N, C, H, W] float32 from per-image streams."""
        indexes = self._indexes(*latent_size)
        rows = [
            self._decoder.decode_with_indexes(decoder_safe(stream, len(indexes)), indexes, self._cdf, self._lengths,
                                              self._offsets)
            for stream in streams
        ]
        return self.dequantize(np.asarray(rows, dtype=np.int32).reshape(len(streams), self.tables.channels, *latent_size))

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        """ŷ = symbols + medians, float32 [N, C, H, W]."""
        return symbols.astype(np.float32) + self._medians

    def encode_batch(self, latent: np.ndarray) -> bytes:
        """One stream for the whole batch: every image's symbols, image after image."""
        self._check(latent, len(latent))
        symbols = self.symbols(latent).reshape(-1).tolist()
        return self._encoder.encode_with_indexes(
            symbols, self._indexes(*latent.shape[2:], images=len(latent)), self._cdf, self._lengths, self._offsets)

    def decode_batch(self, stream: bytes, images: int, latent_size: tuple[int, int]) -> np.ndarray:
        """ŷ [images, C, H, W] float32 from a stream written by ``encode_batch``."""
        indexes = self._indexes(*latent_size, images=images)
        symbols = self._decoder.decode_with_indexes(decoder_safe(stream, len(indexes)), indexes, self._cdf,
                                                    self._lengths, self._offsets)
        return self.dequantize(np.asarray(symbols, dtype=np.int32).reshape(images, self.tables.channels, *latent_size))

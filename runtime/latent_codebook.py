"""A compressor's latent codebook on the wire: every latent its g_a gives is one of K entries (entry k is class k's,
``training.latent_codebook``), so a batch can travel as the entries' indexes instead of the latents' symbols.

    edge:  symbols [N, C, h, w] ──which entry each is──▶ indexes [N] ──rANS(index table)──▶ one stream
    cloud: stream ──rANS⁻¹──▶ indexes ──entries──▶ the symbols a neural-batch stream of the same latents decodes to

The index table is CompressAI's quantised CDF over the K indexes (plus the coder's escape symbol, at one count in
2¹⁶), fitted to how often each entry is expected: the class frequencies of the public training labels. A batch then
costs about its indexes' entropy, log2 K bits per image for balanced classes, plus the coder's final flush.
Integer tables, computed once at export and stored in the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pmc2.runtime.rans import MIN_STREAM_SYMBOLS, decoder_safe, load_ans

PRECISION_BITS = 16


class NotACodebookEntry(ValueError):
    """A latent that is none of the codebook's entries (a g_a that does not end with the codebook's choice)."""


class CorruptIndexStream(ValueError):
    """An index stream that decodes to an index outside the codebook."""


def index_table(counts: np.ndarray) -> np.ndarray:
    """CompressAI's quantised CDF (int32 [K + 2]) of K symbols in proportion to ``counts`` (each at least one count)
    and an escape symbol of one count, summing to 2^PRECISION_BITS; integer arithmetic only."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or len(counts) < 2 or counts.min() < 0 or counts.sum() == 0:
        raise ValueError(f"an index table needs two or more non-negative counts, not {counts.tolist()}")
    budget = (1 << PRECISION_BITS) - 1  # the escape's one count aside
    frequencies = np.maximum(1, counts * budget // counts.sum())
    frequencies[np.argmax(frequencies)] += budget - frequencies.sum()
    return np.concatenate([[0], np.cumsum([*frequencies, 1])]).astype(np.int32)


def entropy_bits(indexes: np.ndarray) -> float:
    """The empirical entropy of ``indexes`` in bits per index: what an ideal coder that knew their frequencies
    would spend."""
    frequencies = np.unique(indexes, return_counts=True)[1] / len(indexes)
    return float(-(frequencies * np.log2(frequencies)).sum())


@dataclass(frozen=True)
class LatentCodebook:
    entries: np.ndarray  # int16 [K, C, h, w]: each entry's symbols, round(ŷ − medians)
    index_cdf: np.ndarray  # int32 [K + 2]: ``index_table`` of the expected entry frequencies

    @classmethod
    def load(cls, path) -> "LatentCodebook":
        with np.load(path) as archive:
            return cls(archive["entries"], archive["index_cdf"])

    def save(self, path) -> None:
        with open(path, "wb") as handle:  # a file handle keeps np.savez from touching the name
            np.savez(handle, entries=self.entries, index_cdf=self.index_cdf)

    @cached_property
    def _positions(self) -> dict[bytes, int]:
        """Each entry's index, keyed by its symbols' bytes (int32): built once, looked up per image on the edge."""
        return {entry.astype(np.int32).tobytes(): index for index, entry in enumerate(self.entries)}

    @property
    def size(self) -> int:
        return len(self.entries)

    def indexes_of(self, symbols: np.ndarray) -> np.ndarray:
        """The entry each latent's symbols [N, C, h, w] are, int32 [N]; NotACodebookEntry if one is none."""
        if symbols.shape[1:] != self.entries.shape[1:]:
            raise NotACodebookEntry(f"latents of shape {symbols.shape[1:]}, the codebook's are {self.entries.shape[1:]}")
        found = [self._positions.get(row.astype(np.int32).tobytes()) for row in symbols]
        strays = [image for image, index in enumerate(found) if index is None]
        if strays:
            raise NotACodebookEntry(f"the latents of images {strays[:5]} are none of the {self.size} codebook entries")
        return np.asarray(found, dtype=np.int32)

    def symbols_at(self, indexes: np.ndarray) -> np.ndarray:
        """The entries' symbols, int32 [N, C, h, w]."""
        return self.entries[indexes].astype(np.int32)


class IndexCoder:
    """One rANS stream of a batch's codebook indexes, with CompressAI's coder and the codebook's index table.

    The encoder overruns its buffer below MIN_STREAM_SYMBOLS symbols (``runtime.rans``), so a smaller batch is
    padded with index 0 up to that many; the decoder, told the batch's size, drops the padding."""

    def __init__(self, codebook: LatentCodebook) -> None:
        ans = load_ans()
        self.codebook = codebook
        self._encoder, self._decoder = ans.RansEncoder(), ans.RansDecoder()
        self._table = ([codebook.index_cdf.tolist()], [len(codebook.index_cdf)], [0])

    def encode(self, indexes: np.ndarray) -> bytes:
        padded = [*indexes.tolist(), *[0] * (MIN_STREAM_SYMBOLS - len(indexes))]
        return self._encoder.encode_with_indexes(padded, [0] * len(padded), *self._table)

    def decode(self, stream: bytes, count: int) -> np.ndarray:
        """int32 [count] indexes; CorruptIndexStream if the stream names an entry the codebook does not have."""
        symbols = max(count, MIN_STREAM_SYMBOLS)
        decoded = self._decoder.decode_with_indexes(decoder_safe(stream, symbols), [0] * symbols, *self._table)
        indexes = np.asarray(decoded[:count], dtype=np.int64)
        if len(indexes) and not 0 <= indexes.min() <= indexes.max() < self.codebook.size:
            raise CorruptIndexStream(f"corrupt index stream: it names entries outside 0..{self.codebook.size - 1}")
        return indexes.astype(np.int32)

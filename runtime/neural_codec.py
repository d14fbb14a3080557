"""The neural codec: g_a + rANS on the edge, rANS⁻¹ + g_s on the cloud (onnxruntime, no torch).

    encode: x' ∈ [0,1] ──g_a──▶ y ──round(y − medians)──▶ rANS ──▶ one stream per image (or per batch)
    decode: streams ──rANS⁻¹──▶ symbols ──+ medians──▶ ŷ ──g_s (clamped)──▶ x̂ ∈ [0,1]
"""

from __future__ import annotations

import numpy as np

from pmc2.runtime.model_bundle import ModelBundle, run_single_output
from pmc2.runtime.rans import EntropyTables, RansCoder


class NeuralCodec:
    """Same interface as the Pillow codecs; an edge holds only g_a, a cloud only g_s."""

    name = "neural"

    def __init__(self, tables: EntropyTables, latent_size: tuple[int, int], g_a=None, g_s=None) -> None:
        self.coder, self.latent_size = RansCoder(tables), latent_size
        self.g_a, self.g_s = g_a, g_s

    @classmethod
    def of(cls, bundle: ModelBundle, compressor: str, g_a=None, g_s=None) -> "NeuralCodec":
        """``compressor``'s codec (runtime.compressors) with ``bundle``'s tables, around the given sessions of its
        g_a and g_s."""
        return cls(bundle.entropy_tables(compressor), bundle.latent_size(compressor), g_a=g_a, g_s=g_s)

    def analyse(self, images_unit: np.ndarray) -> np.ndarray:
        if self.g_a is None:
            raise RuntimeError("this neural codec has no g_a session (decode-only)")
        return run_single_output(self.g_a, images_unit)

    def synthesise(self, latent_hat: np.ndarray) -> np.ndarray:
        if self.g_s is None:
            raise RuntimeError("this neural codec has no g_s session (encode-only)")
        return run_single_output(self.g_s, latent_hat)

    def reconstruct(self, images_unit: np.ndarray) -> np.ndarray:
        """g_s(ŷ) of g_a's latent rounded as the coder rounds it: what decoding the bitstream gives, without
        writing one."""
        return self.synthesise(self.coder.dequantize(self.coder.symbols(self.analyse(images_unit))))

    def encode(self, images_unit: np.ndarray) -> list[bytes]:
        return self.coder.encode(self.analyse(images_unit))

    def decode(self, payloads: list[bytes]) -> np.ndarray:
        return self.synthesise(self.coder.decode(payloads, self.latent_size))

    def encode_stream(self, images_unit: np.ndarray) -> bytes:
        """The whole batch as one rANS stream."""
        return self.coder.encode_batch(self.analyse(images_unit))

    def decode_stream(self, stream: bytes, images: int) -> np.ndarray:
        return self.synthesise(self.coder.decode_batch(stream, images, self.latent_size))

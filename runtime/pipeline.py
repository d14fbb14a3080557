"""The PMC² data path as plain functions over numpy batches (no torch).

    uint8 HWC ──preprocess──▶ normalised NCHW ──perturb──▶ x' in [0,1] ──encode──▶ bytes
    bytes ──decode──▶ [0,1] ──classify (normalises)──▶ labels
"""

from __future__ import annotations

import numpy as np

from pmc2.runtime.image_codecs import Codec, jpeg_codec, png_codec
from pmc2.runtime.model_bundle import ModelBundle, run_single_output
from pmc2.runtime.neural_codec import NeuralCodec
from pmc2.runtime.normalization import normalize, to_unit_nchw

CODEC_NAMES = ("neural", "png", "jpeg")


def preprocess(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,3] -> normalised float32 [N,3,H,W]."""
    return normalize(to_unit_nchw(images_uint8))


def perturb(generator, images_normalized: np.ndarray) -> np.ndarray:
    """Protective perturbation: normalised NCHW in, perturbed [0, 1] NCHW out (the form every codec takes)."""
    return run_single_output(generator, images_normalized)


def classify(classifier, images_unit: np.ndarray) -> np.ndarray:
    """Top-1 labels (int64) of [0, 1] NCHW images."""
    return run_single_output(classifier, normalize(images_unit)).argmax(axis=1)


def encode(codec: Codec, images_unit: np.ndarray) -> list[bytes]:
    return codec.encode(images_unit)


def decode(codec: Codec, payloads: list[bytes]) -> np.ndarray:
    return codec.decode(payloads)


def build_codec(name: str, bundle: ModelBundle | None = None, jpeg_quality: int = 95,
                g_a=None, g_s=None) -> Codec:
    """A codec by name; the neural one needs the bundle's entropy tables and g_a and/or g_s."""
    if name == "png":
        return png_codec()
    if name == "jpeg":
        return jpeg_codec(jpeg_quality)
    if name == "neural":
        if bundle is None:
            raise ValueError("the neural codec needs a model bundle (entropy tables)")
        return NeuralCodec(bundle.entropy_tables(), bundle.latent_size, g_a=g_a, g_s=g_s)
    raise ValueError(f"unknown codec {name!r}; choose from {', '.join(CODEC_NAMES)}")

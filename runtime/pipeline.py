"""The PMC² data path as plain functions over numpy batches (no torch).

    uint8 HWC ──preprocess──▶ normalised NCHW ──perturb──▶ x' in [0,1] ──link codec (runtime.link_codecs)──▶ bytes
    bytes ──link codec──▶ [0,1] ──classify (normalises)──▶ labels
"""

from __future__ import annotations

import numpy as np

from pmc2.runtime.model_bundle import run_single_output
from pmc2.runtime.normalization import normalize, to_unit_nchw


def preprocess(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,3] -> normalised float32 [N,3,H,W]."""
    return normalize(to_unit_nchw(images_uint8))


def perturb(generator, images_normalized: np.ndarray) -> np.ndarray:
    """Protective perturbation: normalised NCHW in, perturbed [0, 1] NCHW out (the form every codec takes)."""
    return run_single_output(generator, images_normalized)


def classify(classifier, images_unit: np.ndarray) -> np.ndarray:
    """Top-1 labels (int64) of [0, 1] NCHW images."""
    return run_single_output(classifier, normalize(images_unit)).argmax(axis=1)

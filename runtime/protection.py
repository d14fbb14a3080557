"""What the edge makes of an image before any link codec sees it (torch-free).

    uint8 ──generator──▶ x' ───────────────────────────────▶ neural links (g_a + rANS of x')
                         └─(bundle "link_image": "decoded")─g_a, round, g_s─▶ x̂ ──▶ pixel links (PNG, JPEG, WebP)

A bundle whose generator was trained with the "decoded" tie has every pixel link carry the edge's own
decode x̂ of the bitstream, so no link carries more than the bitstream does; otherwise pixel links carry x'.
"""

from __future__ import annotations

import numpy as np

from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.neural_codec import NeuralCodec
from pmc2.runtime.pipeline import perturb, preprocess
from pmc2.runtime.sessions import SessionSettings

LINK_IMAGES = ("perturbed", "decoded")


class Protector:
    """The bundle's generator and, for a "decoded" bundle, the neural round trip the pixel links carry."""

    def __init__(self, bundle: ModelBundle, settings: SessionSettings = SessionSettings(), g_a=None, g_s=None) -> None:
        self.generator = bundle.session("generator", settings)
        self.link_image = bundle.link_image
        self.round_trip = None
        if self.link_image == "decoded":
            self.round_trip = NeuralCodec(bundle.entropy_tables(), bundle.latent_size,
                                          g_a=g_a or bundle.session("g_a", settings),
                                          g_s=g_s or bundle.session("g_s", settings))

    def perturb(self, images_uint8: np.ndarray) -> np.ndarray:
        """x' in [0, 1] NCHW."""
        return perturb(self.generator, preprocess(images_uint8))

    def pixels_for_links(self, perturbed: np.ndarray) -> np.ndarray:
        """The image a pixel link carries: x', or x̂ for a "decoded" bundle."""
        return perturbed if self.round_trip is None else self.round_trip.reconstruct(perturbed)

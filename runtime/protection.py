"""The protectors: what the edge makes of an image before any link codec sees it (torch-free).

    uint8 ──protector's model──▶ x' ───────────────────────────────▶ neural links (g_a + rANS of x')
                                 └─(model's "link_image": "decoded")─g_a, round, g_s─▶ x̂ ──▶ pixel links

Protectors are found by name in ``PROTECTORS``, as link codecs are in ``runtime.link_codecs``. Two kinds:
"image" protectors map an image to an image that travels over any link codec — PMC²'s protective
perturbation (the bundle's "generator") and DAPter's converter (its "dapter" model); a model trained with
the "decoded" tie has every pixel link carry the edge's own decode x̂ of the bitstream, so no link carries
more than the bitstream does, otherwise pixel links carry x'. The "split" protector, FaceMix, runs the first
layers of its own classifier and sends keyed mixtures of features instead (``runtime.facemix``). To add an
image protector: export its model into the bundle and add one ``ProtectorSpec`` below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.neural_codec import NeuralCodec
from pmc2.runtime.pipeline import perturb, preprocess
from pmc2.runtime.sessions import SessionSettings

LINK_IMAGES = ("perturbed", "decoded")


class UnknownProtector(ValueError):
    """No protector has that name, or the model bundle does not hold its model."""


@dataclass(frozen=True)
class ProtectorSpec:
    name: str
    edge_models: tuple[str, ...]  # the bundle's ONNX models the edge runs; an image protector's one maps
    summary: str                  # normalised NCHW to [0, 1] NCHW of the same size
    kind: str = "image"  # or "split": the edge runs the first layers of a split classifier (runtime.facemix)


PROTECTORS: dict[str, ProtectorSpec] = {spec.name: spec for spec in (
    ProtectorSpec("perturbation", ("generator",), "PMC²'s protective perturbation (U-Net generator, MMSys'22 slot)"),
    ProtectorSpec("dapter", ("dapter",), "DAPter's converter (WWW'21): eight convolutions, L1 to grey vs target CE"),
    ProtectorSpec("facemix", ("facemix_edge", "facemix_head"),
                  "FaceMix: the edge mixes groups of four images' features with a fresh orthogonal key, the cloud "
                  "runs the middle of the network, the edge demixes and applies the head", "split"),
)}
DEFAULT_PROTECTOR = "perturbation"


def protector_named(name: str) -> ProtectorSpec:
    if name not in PROTECTORS:
        raise UnknownProtector(f"unknown protector {name!r}; choose from {', '.join(PROTECTORS)}")
    return PROTECTORS[name]


def bundle_protectors(bundle: ModelBundle, kind: str | None = None) -> tuple[str, ...]:
    """The protectors (of ``kind``, or of any) whose model ``bundle`` holds."""
    return tuple(name for name, spec in PROTECTORS.items()
                 if set(spec.edge_models) <= set(bundle.manifest["models"]) and kind in (None, spec.kind))


class Protector:
    """One protector's model and, for a "decoded" model, the neural round trip the pixel links carry."""

    def __init__(self, bundle: ModelBundle, settings: SessionSettings = SessionSettings(), g_a=None, g_s=None,
                 name: str = DEFAULT_PROTECTOR) -> None:
        spec = protector_named(name)
        if name not in bundle_protectors(bundle, "image"):
            raise UnknownProtector(f"the model bundle {bundle.folder} has no {spec.edge_models[0]!r} model for image protector "
                                   f"{name!r}; it has {', '.join(bundle_protectors(bundle, 'image'))}")
        self.name = name
        self.generator = bundle.session(spec.edge_models[0], settings)
        self.link_image = bundle.link_image_of(spec.edge_models[0])
        self.round_trip = None
        if self.link_image == "decoded":
            self.round_trip = NeuralCodec(bundle.entropy_tables(), bundle.latent_size,
                                          g_a=g_a or bundle.session("g_a", settings),
                                          g_s=g_s or bundle.session("g_s", settings))

    def perturb(self, images_uint8: np.ndarray) -> np.ndarray:
        """x' in [0, 1] NCHW."""
        return perturb(self.generator, preprocess(images_uint8))

    def pixels_for_links(self, perturbed: np.ndarray) -> np.ndarray:
        """The image a pixel link carries: x', or x̂ for a "decoded" model."""
        return perturbed if self.round_trip is None else self.round_trip.reconstruct(perturbed)

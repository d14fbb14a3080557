"""The protectors: what the edge makes of an image before anything leaves for the cloud (torch-free).

    image:  uint8 ──protector's model──▶ x' ─────────────────────────────────────▶ neural links (g_a + rANS of x')
                                         └─("link_image": "decoded")─g_a, round, g_s─▶ x̂ ──▶ pixel links
            (g_a, g_s: its compressor's, runtime.compressors)
    split:  uint8 ──edge part──▶ float16 payload ──cloud part──▶ outputs ──edge: finish──▶ labels

Protectors are found by name in ``PROTECTORS``, as link codecs are in ``runtime.link_codecs``. Each spec carries its
models' metadata (what each ONNX model takes and gives, which side runs it, whether its manifest entry says what the
pixel links carry), the arrays its edge side loads (FaceMix's decoys; deploy/stage_models.py stages them for the
edge) and its checkpoint's file name (``training.pairs`` finds it in each pair's ``protectors/<name>/``). Two kinds:
"image" protectors map an image to an image that travels over any link codec — PMC²'s protective perturbation (the
bundle's "generator") and DAPter's converter (its "dapter" model); a model trained with the "decoded" tie has every
pixel link carry the edge's own decode x̂ of the bitstream, so no link carries more than the bitstream does,
otherwise pixel links carry x'. An image protector's spec names the compressor trained for its output
(``runtime.compressors``); its links use the one the bundle names for its model (``ModelBundle.compressor_of``).
"split" protectors run part of a classifier on each side and send tensors instead (``runtime.split_protection``;
FaceMix, ``runtime.facemix``).
To add a protector: export its models into the bundle and add one ``ProtectorSpec`` below (for a split
protector, with its ``SplitProtector`` class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pmc2.runtime.compressors import DEFAULT_COMPRESSOR, compressor_named
from pmc2.runtime.facemix import FaceMix
from pmc2.runtime.model_bundle import BundleModel, ModelBundle
from pmc2.runtime.neural_codec import NeuralCodec
from pmc2.runtime.pipeline import perturb, preprocess
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.split_protection import SplitProtector

LINK_IMAGES = ("perturbed", "decoded")


class UnknownProtector(ValueError):
    """No protector has that name, it is not of the kind asked for, or the model bundle does not hold its model."""


@dataclass(frozen=True)
class ProtectorSpec:
    name: str
    summary: str
    models: tuple[BundleModel, ...]  # the bundle's ONNX models it runs
    checkpoint: str = "generator.pt"  # its weights' file name, in a pair's protectors/<name>/ (training.pairs)
    split: type[SplitProtector] | None = None  # a split protector's steps; None for an image protector
    compressor: str | None = DEFAULT_COMPRESSOR  # the one trained for its output (runtime.compressors); None: split
    edge_arrays: tuple[str, ...] = ()  # manifest entries of the arrays its edge side loads (ModelBundle.stored_array)

    @property
    def kind(self) -> str:
        return "image" if self.split is None else "split"

    def models_on(self, side: str) -> tuple[str, ...]:
        """The names of its models that ``side`` ("edge" or "cloud") runs."""
        return tuple(model.name for model in self.models if model.side == side)

    @property
    def edge_models(self) -> tuple[str, ...]:
        return self.models_on("edge")


def image_protector(name: str, model: str, summary: str, compressor: str = DEFAULT_COMPRESSOR) -> ProtectorSpec:
    """An image protector: one edge model from normalised NCHW to [0, 1] NCHW of the same size, whose manifest
    entry says what the pixel links carry behind it, and the compressor trained for its output."""
    return ProtectorSpec(name, summary, (BundleModel(model, "normalized", "unit", link_image=True),),
                         compressor=compressor_named(compressor).name)


PROTECTORS: dict[str, ProtectorSpec] = {spec.name: spec for spec in (
    image_protector("perturbation", "generator", "PMC²'s protective perturbation (U-Net generator, MMSys'22 slot)"),
    image_protector("dapter", "dapter", "DAPter's converter (WWW'21): eight convolutions, L1 to grey vs target CE",
                    compressor="dapter"),
    ProtectorSpec("facemix", "FaceMix: the edge mixes groups of four images' features with a fresh orthogonal key, "
                  "the cloud runs the middle of the network, the edge demixes and applies the head",
                  FaceMix.models, "facemix_fastnet.pt", FaceMix, compressor=None, edge_arrays=(FaceMix.DECOYS,)),
)}
DEFAULT_PROTECTOR = "perturbation"
PROTECTOR_MODELS: dict[str, BundleModel] = {model.name: model for spec in PROTECTORS.values() for model in spec.models}


def protector_named(name: str, kind: str | None = None) -> ProtectorSpec:
    """The spec of protector ``name``; UnknownProtector if there is none, or if it is not of ``kind``."""
    if name not in PROTECTORS:
        raise UnknownProtector(f"unknown protector {name!r}; choose from {', '.join(PROTECTORS)}")
    spec = PROTECTORS[name]
    if kind not in (None, spec.kind):
        raise UnknownProtector(f"protector {name!r} is of kind {spec.kind!r}, not {kind!r}; those of kind {kind!r} are "
                               f"{', '.join(other for other, s in PROTECTORS.items() if s.kind == kind)}")
    return spec


def bundle_protectors(bundle: ModelBundle, kind: str | None = None, side: str = "edge") -> tuple[str, ...]:
    """The protectors (of ``kind``, or of any) whose models for ``side`` ``bundle`` holds."""
    return tuple(name for name, spec in PROTECTORS.items()
                 if set(spec.models_on(side)) <= set(bundle.manifest["models"]) and kind in (None, spec.kind))


def split_protector(name: str, bundle: ModelBundle, side: str, settings: SessionSettings = SessionSettings(),
                    **options) -> SplitProtector:
    """Split protector ``name`` built for ``side`` of ``bundle`` (``options``: its class's own keywords);
    UnknownProtector if ``name`` is no split protector or the bundle lacks that side's models."""
    spec = protector_named(name, "split")
    if name not in bundle_protectors(bundle, "split", side):
        raise UnknownProtector(f"the model bundle {bundle.folder} has no {side} model for split protector {name!r}; "
                               f"it has {', '.join(bundle_protectors(bundle, 'split', side)) or 'none'}")
    return spec.split(bundle, side, settings, **options)


def protector_compressor(bundle: ModelBundle, name: str) -> str:
    """The compressor image protector ``name``'s output goes through in ``bundle`` (runtime.compressors)."""
    return bundle.compressor_of(protector_named(name, "image").models[0].name)


class Protector:
    """One image protector's model, the compressor its output goes through and, for a "decoded" model, the neural
    round trip the pixel links carry. ``session`` opens a bundle model by name (default: a new session each time;
    pass a cached one to share sessions)."""

    def __init__(self, bundle: ModelBundle, settings: SessionSettings = SessionSettings(),
                 name: str = DEFAULT_PROTECTOR, session: Callable[[str], object] | None = None) -> None:
        spec = protector_named(name, "image")
        if name not in bundle_protectors(bundle, "image"):
            raise UnknownProtector(f"the model bundle {bundle.folder} has no {spec.models[0].name!r} model for image protector "
                                   f"{name!r}; it has {', '.join(bundle_protectors(bundle, 'image'))}")
        session = session or (lambda model: bundle.session(model, settings))
        model = spec.models[0].name
        self.name, self.compressor = name, protector_compressor(bundle, name)
        self.generator = session(model)
        self.link_image = bundle.link_image_of(model)
        self.round_trip = None
        if self.link_image == "decoded":
            g_a, g_s = compressor_named(self.compressor).models
            self.round_trip = NeuralCodec.of(bundle, self.compressor, g_a=session(g_a), g_s=session(g_s))

    def perturb(self, images_uint8: np.ndarray) -> np.ndarray:
        """x' in [0, 1] NCHW."""
        return perturb(self.generator, preprocess(images_uint8))

    def pixels_for_links(self, perturbed: np.ndarray) -> np.ndarray:
        """The image a pixel link carries: x', or x̂ for a "decoded" model."""
        return perturbed if self.round_trip is None else self.round_trip.reconstruct(perturbed)

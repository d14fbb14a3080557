"""ORT-vs-torch parity of the exported models and of the neural link's bitstreams.

    x ──generator──▶ x' ──g_a (ends with the codebook's argmax)──▶ ŷ ──rANS──▶ stream ──rANS⁻¹──▶ ŷ ──g_s──▶ x̂
         ORT ≈ torch              ORT latent = torch latent            runtime bytes = CompressAI bytes

Checks, in chunks of CHUNK images: max |ORT − torch| ≤ 1e-4 for every protector (generator, DAPter converter),
classifier, part of FaceMix's split model (with the same keys), every compressor's g_a and g_s (each fed torch's
input; every compressor codes the generator's output), and identical argmax for the classifiers. Per image,
the stream the edge writes (ORT g_a + the runtime's rANS) is byte-identical to CompressAI's compress() of torch's
g_a output, the runtime coder alone writes CompressAI's bytes for torch's latent (so a difference is pinned on g_a
or on the entropy tables), and each side decodes the other's stream to the same ŷ. The pairs' g_a ends by choosing
a codebook entry, so its outputs are equal, not close. A compressor that rounds a continuous latent (DAPter's own)
now and then has a value within float error of a half-integer, which ORT and torch round different ways: an image
whose symbols differ only at such ties (torch's value within the tolerance of one) is counted apart, not failed;
a symbol that differs anywhere else fails its image's stream.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pmc2.training.classifiers import load_classifier
from pmc2.training.compressor import load_compressor
from pmc2.training.generator import PixelOutput, load_generator
from pmc2.training.pairs import ModelPair
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation
from pmc2.runtime.compressors import CompressorSpec, compressor_named
from pmc2.runtime.facemix import FEATURES, HEAD, MIDDLE, demix, group_keys, mix
from pmc2.runtime.model_bundle import ModelBundle, run_single_output
from pmc2.runtime.normalization import CIFAR10_STD, denormalize, normalize
from pmc2.runtime.neural_codec import NeuralCodec
from pmc2.runtime.rans import RansCoder
from pmc2.runtime.pipeline import preprocess

TOLERANCE = 1e-4
STD = np.asarray(CIFAR10_STD, dtype=np.float32).reshape(1, 3, 1, 1)
CHUNK = 500  # images compared at once

Sessions = Callable[[str], object]  # model name → its ORT session (created once)


@dataclass
class ParityReport:
    images: int
    max_abs_difference: dict[str, float] = field(default_factory=dict)
    argmax_mismatches: dict[str, int] = field(default_factory=dict)
    informational: dict[str, float] = field(default_factory=dict)
    coded_images: int = 0  # images whose bitstreams were compared, summed over compressors (0: none selected)
    rounded_at_ties: int = 0  # images whose ORT symbols differ from torch's only where torch's value is at a tie
    stream_mismatches: int = 0  # other images whose ORT g_a + runtime rANS ≠ CompressAI's compress() of torch's g_a output
    coder_mismatches: int = 0  # runtime rANS ≠ CompressAI on the same (torch) latent: the entropy tables differ
    cross_decode_mismatches: int = 0  # either side decodes the other's stream to another ŷ

    def record(self, name: str, got: np.ndarray, expected: np.ndarray, logits: bool = False) -> None:
        """Fold one chunk of ``name``'s outputs in: the largest difference, and for ``logits`` the argmax mismatches."""
        self.max_abs_difference[name] = max(self.max_abs_difference.get(name, 0.0), float(np.abs(got - expected).max()))
        if logits:
            self.argmax_mismatches[name] = self.argmax_mismatches.get(name, 0) + int((got.argmax(1) != expected.argmax(1)).sum())

    def ok(self) -> bool:
        close = all(value <= TOLERANCE for value in self.max_abs_difference.values())
        same_labels = not any(self.argmax_mismatches.values())
        same_streams = not (self.stream_mismatches or self.coder_mismatches or self.cross_decode_mismatches)
        return close and same_labels and same_streams

    def __str__(self) -> str:
        lines = [f"parity on {self.images} images: {'OK' if self.ok() else 'FAILED'}"]
        lines += [f"  {name}: max |ORT - torch| = {value:.2e}" for name, value in self.max_abs_difference.items()]
        lines += [f"  {name}: max |ORT - torch| = {value:.2e} (not gated)" for name, value in self.informational.items()]
        lines += [f"  {name}: argmax mismatches = {value}" for name, value in self.argmax_mismatches.items()]
        if self.coded_images:
            lines += [f"  images rounded another way only at half-integer ties (within {TOLERANCE:g}; not gated): "
                      f"{self.rounded_at_ties} of {self.coded_images}",
                      f"  other neural link streams (ORT g_a + rANS) differing from CompressAI's of torch's g_a: "
                      f"{self.stream_mismatches}",
                      f"  rANS streams differing from CompressAI's for the same latent (entropy tables differ): "
                      f"{self.coder_mismatches}",
                      f"  streams the other side decodes to another y_hat: {self.cross_decode_mismatches}"]
        return "\n".join(lines)


def _compare_protector(session: Sessions, name: str, model, images: np.ndarray, report: ParityReport) -> np.ndarray:
    """One image-to-image protector on ``images`` (normalised); returns torch's [0, 1] output."""
    expected = model(torch.from_numpy(images)).numpy()
    got = run_single_output(session(name), images)
    report.record(name, got, expected)
    # The same difference before de-normalisation (÷ std, so ~4x larger), for comparison.
    key = f"{name} (normalised space)"
    report.informational[key] = max(report.informational.get(key, 0.0), float((np.abs(got - expected) / STD).max()))
    return expected


@torch.inference_mode()
def _compare_networks(session: Sessions, torch_models: dict, images: np.ndarray, report: ParityReport) -> np.ndarray:
    """Run the protectors and classifiers on ``images`` (normalised); returns torch's generator output in
    [0, 1] (the clean images when the generator is not compared)."""
    outputs = {name: _compare_protector(session, name, model, images, report)
               for name, model in torch_models.items() if name not in ("target", "aux")}
    perturbed_unit = outputs.get("generator", np.clip(denormalize(images), 0.0, 1.0))
    perturbed = normalize(perturbed_unit)
    for name in ("target", "aux"):
        if name in torch_models:
            for space, inputs in (("clean", images), ("perturbed", perturbed)):
                expected = torch_models[name](torch.from_numpy(inputs)).numpy()
                report.record(f"{name} ({space})", run_single_output(session(name), inputs), expected, logits=True)
    return perturbed_unit


def _rounded_apart_only_at_ties(coder: RansCoder, latent_ort: np.ndarray, latent_torch: np.ndarray) -> np.ndarray:
    """Per image: do the coder's symbols for ORT's latent differ from those for torch's, and only where torch's value
    lies within TOLERANCE of a half-integer (its rounding residual within TOLERANCE of ±0.5)?"""
    symbols_torch = coder.symbols(latent_torch)
    differing = coder.symbols(latent_ort) != symbols_torch
    off_tie = differing & (np.abs(latent_torch - coder.dequantize(symbols_torch)) < 0.5 - TOLERANCE)
    return differing.reshape(len(differing), -1).any(1) & ~off_tie.reshape(len(differing), -1).any(1)


def _differing(ours: list[bytes], reference: list[bytes]) -> int:
    return sum(a != b for a, b in zip(ours, reference, strict=True))


@torch.inference_mode()
def _compare_codec(spec: CompressorSpec, codec: NeuralCodec, compressor, images_unit: np.ndarray,
                   report: ParityReport) -> None:
    """One compressor's g_a, rANS coder and g_s in the runtime against torch and CompressAI, image by image."""
    bottleneck, size = compressor.entropy_bottleneck, codec.latent_size
    latent_torch = compressor.g_a(torch.from_numpy(images_unit))
    latent_ort = codec.analyse(images_unit)
    report.record(spec.g_a, latent_ort, latent_torch.numpy())
    reference = list(bottleneck.compress(latent_torch))
    ours = codec.coder.encode(latent_ort)
    report.coded_images += len(images_unit)
    at_ties = _rounded_apart_only_at_ties(codec.coder, latent_ort, latent_torch.numpy())
    report.rounded_at_ties += int(at_ties.sum())
    report.stream_mismatches += sum(not tie and a != b for tie, a, b in zip(at_ties, ours, reference, strict=True))
    report.coder_mismatches += _differing(codec.coder.encode(latent_torch.numpy()), reference)
    y_hat = bottleneck.decompress(reference, size)
    cross = ((bottleneck.decompress(ours, size).numpy() != codec.coder.decode(ours, size))
             | (codec.coder.decode(reference, size) != y_hat.numpy()))
    report.cross_decode_mismatches += int(cross.reshape(len(cross), -1).any(1).sum())
    report.record(spec.g_s, codec.synthesise(y_hat.numpy()), compressor.g_s(y_hat).clamp(0, 1).numpy())


@torch.inference_mode()
def _compare_facemix(session: Sessions, model, images: np.ndarray, report: ParityReport) -> None:
    """FaceMix's three ONNX parts against torch's, fed the same inputs (mixed with the same keys)."""
    keys = group_keys(len(images), np.random.default_rng(0))
    features = model.edge_features(torch.from_numpy(images)).numpy()
    mixed = mix(features, keys)
    cloud_outputs = model.cloud_features(torch.from_numpy(mixed)).numpy()
    demixed = demix(cloud_outputs, keys)
    logits = model.edge_logits(torch.from_numpy(demixed)).numpy()
    expected = {FEATURES.name: (images, features), MIDDLE.name: (mixed, cloud_outputs), HEAD.name: (demixed, logits)}
    for name, (inputs, output) in expected.items():
        report.record(name, run_single_output(session(name), inputs), output, logits=name == HEAD.name)


def _pixel_output(checkpoint: Path) -> PixelOutput:
    return PixelOutput(load_generator(checkpoint))


def check_parity(pair: ModelPair, folder: Path, selected: tuple[str, ...],
                 data: LabelledImages | None = None) -> ParityReport:
    """Compare the bundle in ``folder`` with ``pair``'s torch checkpoints on ``data`` (default: bundled sample)."""
    data = data if data is not None else load_evaluation(None)
    bundle = ModelBundle.open(folder)
    session = functools.cache(bundle.session)
    loaders = {**{name: functools.partial(_pixel_output, checkpoint)
                  for name, checkpoint in pair.model_checkpoints("image").items()},
               "target": lambda: load_classifier(pair.target), "aux": lambda: load_classifier(pair.aux)}
    torch_models = {name: load() for name, load in loaders.items() if name in selected}
    facemix_checkpoint = dict(pair.split_protectors).get("facemix")
    facemix = load_classifier(facemix_checkpoint) if facemix_checkpoint and FEATURES.name in selected else None
    trained = pair.compressors()
    coders = {spec: (NeuralCodec.of(bundle, spec.name, g_a=session(spec.g_a), g_s=session(spec.g_s)),
                     load_compressor(trained[spec.name]))
              for spec in map(compressor_named, trained) if set(spec.models) <= set(selected)}
    report = ParityReport(len(data))
    images = preprocess(data.images)
    for start in range(0, len(images), CHUNK):
        chunk = images[start : start + CHUNK]
        perturbed_unit = _compare_networks(session, torch_models, chunk, report)
        if facemix is not None:
            _compare_facemix(session, facemix, chunk, report)
        for spec, (codec, compressor) in coders.items():
            _compare_codec(spec, codec, compressor, perturbed_unit, report)
    return report

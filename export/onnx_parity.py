"""ORT-vs-torch parity of the exported models and of the neural codec's bitstreams.

Checks: max |ORT − torch| ≤ 1e-4 for every protector (generator, DAPter converter), classifier and part of
FaceMix's split model (with the same keys), and identical argmax for the classifiers; the runtime's rANS streams byte-identical to CompressAI's compress()
for the same latent; each side decodes the other's streams to the same ŷ; end-to-end stream differences
only where ORT's g_a puts a latent value within FLIP_BOUNDARY of a rounding boundary.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pmc2.export.classifiers import load_classifier
from pmc2.export.compressor import load_compressor
from pmc2.export.generator import PixelOutput, load_generator
from pmc2.export.pairs import ModelPair
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation
from pmc2.runtime.facemix import demix, group_keys, mix
from pmc2.runtime.model_bundle import ModelBundle, run_single_output
from pmc2.runtime.normalization import CIFAR10_STD, denormalize, normalize
from pmc2.runtime.neural_codec import NeuralCodec
from pmc2.runtime.pipeline import preprocess

TOLERANCE = 1e-4
STD = np.asarray(CIFAR10_STD, dtype=np.float32).reshape(1, 3, 1, 1)
FLIP_BOUNDARY = 1e-5  # a symbol may flip only if its latent is this close to k + 0.5


@dataclass
class ParityReport:
    images: int
    max_abs_difference: dict[str, float]
    argmax_mismatches: dict[str, int]
    informational: dict[str, float] = field(default_factory=dict)
    bitstreams_identical: bool | None = None
    cross_decode_identical: bool | None = None
    end_to_end_stream_mismatches: int | None = None
    max_boundary_distance_of_flips: float | None = None
    streams_differing_without_a_flip: int = 0  # same symbols, other bytes: the two coders' tables differ

    def ok(self) -> bool:
        close = all(value <= TOLERANCE for value in self.max_abs_difference.values())
        same_labels = not any(self.argmax_mismatches.values())
        flips_explained = (self.max_boundary_distance_of_flips or 0.0) <= FLIP_BOUNDARY
        coder_exact = (self.bitstreams_identical is not False and self.cross_decode_identical is not False
                       and self.streams_differing_without_a_flip == 0)
        return close and same_labels and coder_exact and flips_explained

    def __str__(self) -> str:
        lines = [f"parity on {self.images} images: {'OK' if self.ok() else 'FAILED'}"]
        lines += [f"  {name}: max |ORT - torch| = {value:.2e}" for name, value in self.max_abs_difference.items()]
        lines += [f"  {name}: max |ORT - torch| = {value:.2e} (not gated)" for name, value in self.informational.items()]
        lines += [f"  {name}: argmax mismatches = {value}" for name, value in self.argmax_mismatches.items()]
        if self.bitstreams_identical is not None:
            lines.append(f"  rANS streams identical to CompressAI's for the same latent: {self.bitstreams_identical}")
            lines.append(f"  cross-decoding recovers the same y_hat: {self.cross_decode_identical}")
            lines.append(f"  end-to-end (ORT g_a) streams differing from CompressAI's: {self.end_to_end_stream_mismatches}"
                         + (f" (flipped symbols at most {self.max_boundary_distance_of_flips:.1e} from a rounding boundary)"
                            if self.max_boundary_distance_of_flips is not None else ""))
            if self.streams_differing_without_a_flip:
                lines.append(f"  streams differing with identical symbols (entropy tables differ): "
                             f"{self.streams_differing_without_a_flip}")
        return "\n".join(lines)


def _compare_protector(bundle: ModelBundle, name: str, model, images: np.ndarray, report: ParityReport) -> np.ndarray:
    """One image-to-image protector on ``images`` (normalised); returns torch's [0, 1] output."""
    expected = model(torch.from_numpy(images)).numpy()
    difference = np.abs(run_single_output(bundle.session(name), images) - expected)
    report.max_abs_difference[name] = max(report.max_abs_difference.get(name, 0.0), float(difference.max()))
    # The same difference before de-normalisation (÷ std, so ~4x larger), for comparison.
    key = f"{name} (normalised space)"
    report.informational[key] = max(report.informational.get(key, 0.0), float((difference / STD).max()))
    return expected


@torch.inference_mode()
def _compare_networks(bundle: ModelBundle, torch_models: dict, images: np.ndarray, report: ParityReport) -> np.ndarray:
    """Run the protectors and classifiers on ``images`` (normalised); returns torch's generator output in
    [0, 1] (the clean images when the generator is not compared)."""
    outputs = {name: _compare_protector(bundle, name, model, images, report)
               for name, model in torch_models.items() if name not in ("target", "aux")}
    perturbed_unit = outputs.get("generator", np.clip(denormalize(images), 0.0, 1.0))
    perturbed = normalize(perturbed_unit)
    for name in ("target", "aux"):
        if name not in torch_models:
            continue
        session = bundle.session(name)
        for space, inputs in (("clean", images), ("perturbed", perturbed)):
            expected = torch_models[name](torch.from_numpy(inputs)).numpy()
            got = run_single_output(session, inputs)
            key = f"{name} ({space})"
            report.max_abs_difference[key] = float(np.abs(got - expected).max())
            report.argmax_mismatches[key] = int((got.argmax(1) != expected.argmax(1)).sum())
    return perturbed_unit


@torch.inference_mode()
def _compare_codec(bundle: ModelBundle, compressor, images_unit: np.ndarray, report: ParityReport) -> None:
    """Bitstreams and ŷ of the runtime codec against CompressAI, on the same images."""
    codec = NeuralCodec(bundle.entropy_tables(), bundle.latent_size, g_a=bundle.session("g_a"), g_s=bundle.session("g_s"))
    bottleneck = compressor.entropy_bottleneck
    latent_torch = compressor.g_a(torch.from_numpy(images_unit))
    reference = list(bottleneck.compress(latent_torch))
    # The coder alone, fed CompressAI's own latent, must write exactly CompressAI's bytes.
    report.bitstreams_identical = codec.coder.encode(latent_torch.numpy()) == reference
    # End to end, ORT's g_a differs from torch's by ~1e-7, which can move a value across a rounding
    # boundary; such images are counted, and the distance of their latent to the boundary reported.
    latent_ort = codec.analyse(images_unit)
    ours = codec.coder.encode(latent_ort)
    differing = [i for i, (a, b) in enumerate(zip(ours, reference, strict=True)) if a != b]
    report.end_to_end_stream_mismatches = len(differing)
    if differing:
        medians = codec.coder.tables.medians.reshape(1, -1, 1, 1)
        fractional = np.abs((latent_ort[differing] - medians) % 1.0 - 0.5)
        flipped = codec.coder.symbols(latent_ort[differing]) != codec.coder.symbols(latent_torch.numpy()[differing])
        report.streams_differing_without_a_flip = int((~flipped.reshape(len(differing), -1).any(1)).sum())
        if flipped.any():
            report.max_boundary_distance_of_flips = float(fractional[flipped].max())
    size = tuple(latent_torch.shape[2:])
    ours_by_torch = bottleneck.decompress(ours, size).numpy()
    reference_by_ours = codec.coder.decode(reference, codec.latent_size)
    report.cross_decode_identical = bool(
        np.array_equal(ours_by_torch, codec.coder.decode(ours, codec.latent_size))
        and np.array_equal(reference_by_ours, bottleneck.decompress(reference, size).numpy())
    )
    expected_x_hat = compressor.g_s(bottleneck.decompress(reference, size)).clamp(0, 1).numpy()
    report.max_abs_difference["g_s"] = float(np.abs(codec.synthesise(reference_by_ours) - expected_x_hat).max())


@torch.inference_mode()
def _compare_facemix(bundle: ModelBundle, checkpoint: Path, images: np.ndarray, report: ParityReport) -> None:
    """FaceMix's three ONNX parts against torch's, fed the same inputs (mixed with the same keys)."""
    model = load_classifier(checkpoint)
    keys = group_keys(len(images), np.random.default_rng(0))
    features = model.edge_features(torch.from_numpy(images)).numpy()
    mixed = mix(features, keys)
    cloud_outputs = model.cloud_features(torch.from_numpy(mixed)).numpy()
    demixed = demix(cloud_outputs, keys)
    logits = model.edge_logits(torch.from_numpy(demixed)).numpy()
    expected = {"facemix_edge": (images, features), "facemix_cloud": (mixed, cloud_outputs),
                "facemix_head": (demixed, logits)}
    for name, (inputs, output) in expected.items():
        got = run_single_output(bundle.session(name), inputs)
        report.max_abs_difference[name] = max(report.max_abs_difference.get(name, 0.0), float(np.abs(got - output).max()))
    report.argmax_mismatches["facemix_head"] = report.argmax_mismatches.get("facemix_head", 0) + int(
        (got.argmax(1) != logits.argmax(1)).sum())


def _pixel_output(checkpoint: Path) -> PixelOutput:
    return PixelOutput(load_generator(checkpoint))


def check_parity(pair: ModelPair, folder: Path, selected: tuple[str, ...],
                 data: LabelledImages | None = None) -> ParityReport:
    """Compare the bundle in ``folder`` with ``pair``'s torch checkpoints on ``data`` (default: bundled sample)."""
    data = data if data is not None else load_evaluation(None)
    bundle = ModelBundle.open(folder)
    protectors = {"generator": pair.generator, **dict(pair.other_protectors)}
    loaders = {**{name: functools.partial(_pixel_output, checkpoint) for name, checkpoint in protectors.items()},
               "target": lambda: load_classifier(pair.target), "aux": lambda: load_classifier(pair.aux)}
    torch_models = {name: load() for name, load in loaders.items() if name in selected}
    report = ParityReport(len(data), {}, {})
    images = preprocess(data.images)
    perturbed_unit = np.concatenate([
        _compare_networks(bundle, torch_models, images[start : start + 500], report)
        for start in range(0, len(images), 500)
    ])
    if pair.facemix and "facemix_edge" in selected:
        for start in range(0, len(images), 500):
            _compare_facemix(bundle, pair.facemix, images[start : start + 500], report)
    if {"g_a", "g_s"} <= set(selected):
        _compare_codec(bundle, load_compressor(pair.compressor), perturbed_unit, report)
    return report

"""Evaluate the trained PMC² pipeline in-process (torch + CompressAI) and print the results table.

    original ──target──▶ clean accuracy
        └──generator──▶ x' ──▶ what the pixel links carry (x', or x̂ for a "decoded"-tie generator)
                        │          ──target / aux──▶ "perturbed" accuracies, |SSIM(x, ·)|
                        └──every registered link codec──target──▶ accuracy, bytes
                             (pixel codecs by their class; codecs of a latent by CompressAI compress→decompress,
                              their bytes at the images per stream the codec declares)
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from compressai.models import FactorizedPrior
from tqdm import tqdm

from pmc2.training.classifiers import load_classifier
from pmc2.training.generator import load_generator
from pmc2.training.compressor import entropy_tables, load_compressor
from pmc2.training.data import as_tensors, denormalize, normalize, to_unit
from pmc2.training.pairs import DEFAULT_PAIR, PAIRS, ModelPair
from pmc2.training.perturbation_loss import per_image_ssim
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation
from pmc2.runtime.latent_codebook import IndexCoder, LatentCodebook
from pmc2.runtime.link_codecs import LINK_CODECS, CodecContext
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.protection import protector_compressor
from pmc2.runtime.rans import RansCoder
from pmc2.value_ranges import jpeg_quality


@dataclass
class TrainedPipeline:
    target: torch.nn.Module
    aux: torch.nn.Module
    generator: torch.nn.Module
    compressor: torch.nn.Module

    @classmethod
    def load(cls, pair: ModelPair = DEFAULT_PAIR) -> "TrainedPipeline":
        return cls(load_classifier(pair.target), load_classifier(pair.aux), load_generator(pair.generator),
                   load_compressor(pair.compressor))

    @torch.inference_mode()
    def link_images(self, perturbed_unit: torch.Tensor) -> torch.Tensor:
        """What the pixel links carry: x', or, for a generator trained with the "decoded" tie, the edge's own
        decode x̂ of the bitstream (the latent rounded as the coder rounds it)."""
        if self.generator.link_image != "decoded":
            return perturbed_unit
        return self.compressor.eval()(perturbed_unit)["x_hat"].clamp(0, 1)


def _correct(model: torch.nn.Module, images_normalized: torch.Tensor, labels: torch.Tensor) -> int:
    return int((model(images_normalized).argmax(1) == labels).sum())


def exported_codebook(pair: ModelPair) -> LatentCodebook | None:
    """The latent codebook of the compressor ``pair``'s protector goes through, as its bundle ships it (None if it
    has none): index streams are measured with the exported index table."""
    bundle = ModelBundle.open(pair.onnx_models)
    return bundle.latent_codebook(protector_compressor(bundle, pair.protector))


def stream_encoders(compressor: FactorizedPrior,
                    codebook: LatentCodebook | None) -> dict[str, Callable[[np.ndarray], bytes]]:
    """How a one-stream latent codec writes a chunk of latents [N, C, h, w] as one stream, by the measurement it
    declares (``LinkCodec.measured_bytes``): the rANS stream of the symbols, and, given the compressor's exported
    latent codebook (its bundle's), the stream of its entries' indexes (runtime.latent_codebook)."""
    coder = RansCoder(entropy_tables(compressor))
    encoders = {"batched_bytes": coder.encode_batch}
    if codebook is not None:
        indexes = IndexCoder(codebook)
        encoders["codebook_bytes"] = lambda latent: indexes.encode(codebook.indexes_of(coder.symbols(latent)))
    return encoders


def stream_bytes(encode: Callable[[np.ndarray], bytes], latent: np.ndarray,
                 images_per_stream: int) -> list[tuple[int, int]]:
    """Each stream's size and image count when every ``images_per_stream`` images of ``latent`` share one."""
    chunks = (latent[start : start + images_per_stream] for start in range(0, len(latent), images_per_stream))
    return [(len(encode(chunk)), len(chunk)) for chunk in chunks]


def bytes_per_image_in_streams(encode: Callable[[np.ndarray], bytes], latent: np.ndarray,
                               images_per_stream: int) -> float:
    return sum(size for size, _ in stream_bytes(encode, latent, images_per_stream)) / len(latent)


@torch.inference_mode()
def evaluate(pipeline: TrainedPipeline, data: LabelledImages, jpeg_quality: int, batch_size: int = 250,
             codebook: LatentCodebook | None = None) -> dict:
    """Accuracies (%), mean |SSIM| and mean bytes/image of every registered edge→cloud link codec: the pixel
    codecs built with ``jpeg_quality`` (defaults otherwise), the codecs of a latent from the compressor (a codebook
    codec only given its ``codebook``, e.g. ``exported_codebook``)."""
    images, labels = as_tensors(data)
    pixel_codecs = {name: codec.build(CodecContext(jpeg_quality=jpeg_quality))
                    for name, codec in LINK_CODECS.items() if codec.carries_pixels}
    counts = {key: 0 for key in ("clean", "perturbed", "aux_perturbed", *pixel_codecs)}
    sizes = {name: [] for name in pixel_codecs}
    decoded_correct, per_image_streams, latents, abs_ssim = 0, [], [], []
    compressor = pipeline.compressor
    for start in tqdm(range(0, len(images), batch_size), desc="evaluating"):
        x = normalize(to_unit(images[start : start + batch_size]))
        y = labels[start : start + batch_size]
        perturbed_unit = denormalize(pipeline.generator(x)).clamp(0, 1)
        carried = pipeline.link_images(perturbed_unit)
        carried_normalized = normalize(carried)
        counts["clean"] += _correct(pipeline.target, x, y)
        counts["perturbed"] += _correct(pipeline.target, carried_normalized, y)
        counts["aux_perturbed"] += _correct(pipeline.aux, carried_normalized, y)
        abs_ssim.append(per_image_ssim(x, carried_normalized).abs())
        for name, codec in pixel_codecs.items():
            payloads = codec.encode(carried.numpy())
            sizes[name] += [len(p) for p in payloads]
            decoded = torch.from_numpy(codec.decode(payloads, len(payloads)))
            counts[name] += _correct(pipeline.target, normalize(decoded), y)
        latent = compressor.g_a(perturbed_unit)  # CompressAI's compress(), keeping the latent for shared streams
        strings = compressor.entropy_bottleneck.compress(latent)
        per_image_streams += [len(s) for s in strings]
        latents.append(latent.numpy())
        x_hat = compressor.decompress([strings], latent.shape[-2:])["x_hat"].clamp(0, 1)
        decoded_correct += _correct(pipeline.target, normalize(x_hat), y)
    # a latent codec's streams decode to the same symbols however they are written: only the bytes differ
    encoders, latent = stream_encoders(compressor, codebook), np.concatenate(latents)
    for name, codec in LINK_CODECS.items():
        images_per_stream = codec.evaluated_images_per_stream
        if codec.carries_pixels or (images_per_stream > 1 and codec.measured_bytes not in encoders):
            continue  # a codebook codec, for a compressor without a codebook
        counts[name] = decoded_correct
        sizes[name] = per_image_streams if images_per_stream == 1 else [
            size / count for size, count in stream_bytes(encoders[codec.measured_bytes], latent, images_per_stream)
            for _ in range(count)]
    n = len(images)
    return {
        "images": n,
        "jpeg_quality": jpeg_quality,
        "accuracy": {key: 100 * value / n for key, value in counts.items()},
        "mean_abs_ssim": float(torch.cat(abs_ssim).mean()),
        "bytes_mean": {key: float(np.mean(value)) for key, value in sizes.items()},
        "bytes_std": {key: float(np.std(value)) for key, value in sizes.items()},
    }


def format_table(results: dict) -> str:
    acc, size, std = results["accuracy"], results["bytes_mean"], results["bytes_std"]
    settings = {"jpeg_quality": results["jpeg_quality"]}
    rows = [
        ("clean target accuracy", f"{acc['clean']:.2f}%", ""),
        ("perturbed target accuracy", f"{acc['perturbed']:.2f}%", ""),
        ("perturbed aux accuracy", f"{acc['aux_perturbed']:.2f}%", ""),
        ("mean |SSIM(x, x')|", f"{results['mean_abs_ssim']:.4f}", ""),
        *[(f"edge→cloud {codec.report_label} ({codec.describe(settings)})", f"{acc[name]:.2f}%",
           f"{size[name]:.2f} ± {std[name]:.2f} B") for name, codec in LINK_CODECS.items() if name in size],
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{results['images']} evaluation images", f"{'metric':<{width}}  {'value':>8}  bytes/image"]
    lines += [f"{name:<{width}}  {value:>8}  {extra}" for name, value, extra in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="CIFAR-10 folder (npz or batches-py); default: the bundled 500-image sample")
    parser.add_argument("--pair", choices=PAIRS, default=DEFAULT_PAIR.name, help="target/aux pair to evaluate")
    parser.add_argument("--jpeg-quality", type=jpeg_quality, default=95)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    pipeline = TrainedPipeline.load(PAIRS[args.pair])
    results = evaluate(pipeline, load_evaluation(args.data), args.jpeg_quality, codebook=exported_codebook(PAIRS[args.pair]))
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Every number of the report, measured by running the shipped models (torch + CompressAI) on images.

    original ──phone JPEG (S1)──▶ edge input ──generator──▶ x' ──each link codec (S2)──▶ target ──▶ accuracy

Pixel link codecs are measured through their registered class (``runtime.link_codecs``), at the context's
defaults or tuned per pair (their ``Tuning``); codecs of a latent read the pair's compressor, measured with
CompressAI, at the images per stream the codec declares.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from compressai.models import FactorizedPrior
from tqdm import tqdm

from pmc2.training.compressor import DEFAULT_ARCHITECTURE, architecture_of, entropy_tables, load_compressor
from pmc2.training.data import denormalize, normalize
from pmc2.training.evaluate import TrainedPipeline, bytes_per_image_in_streams, stream_encoders
from pmc2.training.perturbation_loss import per_image_ssim
from pmc2.training.records import record_path
from pmc2.runtime.cifar10 import LabelledImages
from pmc2.runtime.image_codecs import jpeg_bytes
from pmc2.runtime.image_decoding import decode_image
from pmc2.runtime.latent_codebook import LatentCodebook, entropy_bits
from pmc2.runtime.link_codecs import LINK_CODECS, CodecContext, LinkCodec, codec_named
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.runtime.rans import RansCoder

CHUNK = 500
COMPRESSORS = "neural"  # a target's results key for its compressors' measurements, the shipped one first


@dataclass
class CodecResult:
    """Accuracy (%) of the target on decoded images and the payload size per image."""

    name: str
    accuracy: float
    bytes_mean: float
    bytes_std: float
    ideal_bytes_mean: float | None = None  # −log2 of the entropy model's likelihoods, in bytes
    batched_bytes: dict[int, float] = field(default_factory=dict)  # images per stream -> bytes/image
    codebook_bytes: dict[int, float] = field(default_factory=dict)  # the same, as codebook indexes (if it has one)
    codebook_entropy_bytes: float | None = None  # the entropy of the codebook indexes chosen, per image
    settings: dict = field(default_factory=dict)


def _chunks(tensor: torch.Tensor):
    for start in range(0, len(tensor), CHUNK):
        yield tensor[start : start + CHUNK]


@torch.inference_mode()
def accuracy(model: torch.nn.Module, images_unit: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy (%) of ``model`` on [0, 1] NCHW images."""
    predictions = torch.cat([model(normalize(chunk)).argmax(1) for chunk in _chunks(images_unit)])
    return 100.0 * float((predictions == labels).float().mean())


class EdgeImages:
    """The evaluation images as the edge sees them: S1 (phone JPEG) decoded, then perturbed."""

    @torch.inference_mode()
    def __init__(self, pipeline: TrainedPipeline, data: LabelledImages, phone_quality: int) -> None:
        self.pipeline, self.phone_quality = pipeline, phone_quality
        self.labels = torch.from_numpy(data.labels.astype(np.int64))
        self.original = torch.from_numpy(to_unit_nchw(data.images))
        self.s1_sizes = []
        decoded = []
        for pixels in tqdm(data.images, desc="phone JPEG (S1)", leave=False):
            payload = jpeg_bytes(pixels, phone_quality)
            self.s1_sizes.append(len(payload))
            decoded.append(decode_image(payload))
        self.edge_input = torch.from_numpy(to_unit_nchw(np.stack(decoded)))
        self.perturbed = torch.cat([
            denormalize(pipeline.generator(normalize(chunk))).clamp(0, 1) for chunk in _chunks(self.edge_input)
        ])
        self.link_images = torch.cat([pipeline.link_images(chunk) for chunk in _chunks(self.perturbed)])

    @torch.inference_mode()
    def privacy(self) -> dict[str, float]:
        """Clean accuracies, and what the perturbation hides: |SSIM| to the original and aux accuracy."""
        ssim = torch.cat([
            per_image_ssim(normalize(original), normalize(perturbed)).abs()
            for original, perturbed in zip(_chunks(self.original), _chunks(self.link_images), strict=True)
        ])
        target, aux = self.pipeline.target, self.pipeline.aux
        return {
            "target_clean": accuracy(target, self.original, self.labels),
            "target_after_s1": accuracy(target, self.edge_input, self.labels),
            "aux_clean": accuracy(aux, self.original, self.labels),
            "target_perturbed": accuracy(target, self.link_images, self.labels),
            "aux_perturbed": accuracy(aux, self.link_images, self.labels),
            "mean_abs_ssim": float(ssim.mean()),
        }

    def s1(self) -> CodecResult:
        sizes = np.asarray(self.s1_sizes)
        return CodecResult("phone JPEG (S1)", accuracy(self.pipeline.target, self.edge_input, self.labels),
                           float(sizes.mean()), float(sizes.std()), settings={"quality": self.phone_quality})

    def link(self, name: str, **context) -> CodecResult:
        """A pixel link codec by name, built with ``context`` (``CodecContext`` fields, kept as the result's
        settings): encode every perturbed image, decode, classify."""
        codec = codec_named(name).build(CodecContext(**context))
        sizes, decoded = [], []
        for chunk in _chunks(self.link_images):
            payloads = codec.encode(chunk.numpy())
            sizes += [len(p) for p in payloads]
            decoded.append(torch.from_numpy(codec.decode(payloads, len(chunk))))
        sizes = np.asarray(sizes)
        return CodecResult(codec.name, accuracy(self.pipeline.target, torch.cat(decoded), self.labels),
                           float(sizes.mean()), float(sizes.std()), settings=context)

    @torch.inference_mode()
    def neural(self, compressor: FactorizedPrior, name: str, batch_sizes: tuple[int, ...],
               codebook: LatentCodebook | None = None, **settings) -> CodecResult:
        """CompressAI's per-image streams (its compress(): g_a, then the EntropyBottleneck's coder) and
        decompress(), the ideal size from the likelihoods, and the size per image when a whole batch
        shares one rANS stream: of the latents' symbols, and of their indexes in ``codebook`` (the compressor's
        exported latent codebook, if given). g_a runs once per chunk for all of them."""
        sizes, ideal_bits, decoded, latents = [], [], [], []
        for chunk in _chunks(self.perturbed):
            latent = compressor.g_a(chunk)
            strings = compressor.entropy_bottleneck.compress(latent)
            sizes += [len(s) for s in strings]
            decoded.append(compressor.decompress([strings], latent.shape[-2:])["x_hat"].clamp(0, 1))
            likelihoods = compressor.entropy_bottleneck(latent, training=False)[1]
            ideal_bits.append(-torch.log2(likelihoods).flatten(1).sum(1))
            latents.append(latent.numpy())
        latent = np.concatenate(latents)
        stream_sizes = {measured: {size: bytes_per_image_in_streams(encode, latent, size) for size in batch_sizes}
                        for measured, encode in stream_encoders(compressor, codebook).items()}
        entropy = None if codebook is None else entropy_bits(
            codebook.indexes_of(RansCoder(entropy_tables(compressor)).symbols(latent))) / 8
        sizes = np.asarray(sizes)
        return CodecResult(name, accuracy(self.pipeline.target, torch.cat(decoded), self.labels),
                           float(sizes.mean()), float(sizes.std()), float(torch.cat(ideal_bits).mean() / 8),
                           settings=settings, codebook_entropy_bytes=entropy, **stream_sizes)

    @torch.inference_mode()
    def grid_images(self, compressor: FactorizedPrior, count: int) -> dict[str, np.ndarray]:
        """uint8 HWC rows for the privacy figure: original, perturbed, neural reconstruction."""
        perturbed = self.perturbed[:count]
        compressed = compressor.compress(perturbed)
        rows = {"original": self.original[:count], "pixel links carry": self.link_images[:count],
                "neural reconstruction (cloud)": compressor.decompress(compressed["strings"], compressed["shape"])["x_hat"]}
        return {name: (row.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
                for name, row in rows.items()}


def lowest_matching_quality(at: Callable[[int], CodecResult], reference_accuracy: float, values: Sequence[int],
                            tolerance: float = 0.5) -> CodecResult:
    """The lowest of ``values`` (a quality) whose accuracy is within ``tolerance`` points of the reference's,
    found by bisection (accuracy taken to rise with the value); the highest value if none is."""
    threshold = reference_accuracy - tolerance
    low, high = 0, len(values) - 1
    if at(values[high]).accuracy < threshold:
        return at(values[high])
    while low < high:
        middle = (low + high) // 2
        if at(values[middle]).accuracy >= threshold:
            high = middle
        else:
            low = middle + 1
    return at(values[low])


def at_defaults(codec: type[LinkCodec]) -> bool:
    """A pixel codec measured as the context's defaults build it (no tuning)."""
    return codec.carries_pixels and codec.tuning is None


def links_in_measuring_order() -> list[type[LinkCodec]]:
    """Every registered link codec, in the order a target's results hold them: the pixel codecs at their
    defaults, then the tuned ones (each against a codec measured before it), then the codecs of a latent."""
    return sorted(LINK_CODECS.values(), key=lambda codec: (not codec.carries_pixels, not at_defaults(codec)))


def result_key(codec: type[LinkCodec]) -> str:
    """Where a target's results hold a codec's measurement (the latent codecs share the compressors')."""
    if not codec.carries_pixels:
        return COMPRESSORS
    return f"{codec.name}_auto" if codec.tuning else codec.name


def link_result(target: dict, codec: type[LinkCodec]) -> CodecResult:
    """A codec's measurement in a target's results (a latent codec's: the shipped compressor's)."""
    result = target[result_key(codec)]
    return result if codec.carries_pixels else result[0]


def link_bytes_per_image(target: dict, codec: type[LinkCodec]) -> float:
    """Bytes per image on the link, at the images per stream the codec is evaluated at."""
    result, images = link_result(target, codec), codec.evaluated_images_per_stream
    return result.bytes_mean if images == 1 else getattr(result, codec.measured_bytes, {})[images]


def measured_links(target: dict) -> list[type[LinkCodec]]:
    """The registered link codecs a target's results measure: every one but a codebook codec of a compressor
    without a codebook (results measured before a codec was registered lack it too)."""
    def measured(codec: type[LinkCodec]) -> bool:
        if codec.carries_pixels or codec.evaluated_images_per_stream == 1:
            return True
        return codec.evaluated_images_per_stream in getattr(link_result(target, codec), codec.measured_bytes, {})
    return [codec for codec in LINK_CODECS.values() if measured(codec)]


def compressor_with_config(path: Path) -> tuple[FactorizedPrior, dict]:
    """A compressor checkpoint and its training config (loss, λ, N/M) from the record beside it."""
    return load_compressor(path), json.loads(record_path(path).read_text())["config"]


def compressor_settings(config: dict, compressor: FactorizedPrior) -> dict:
    """What a report shows of a compressor's training config: its loss, the weight on the rate, N and M, and its
    architecture (the checkpoint's own) where not the default. ``train_compressor`` records a loss name and λ;
    ``train_end_to_end`` records its whole objective (whose "architecture" is its generator's)."""
    architecture = architecture_of(compressor)
    size = {"n": config["n"], "m": config["m"]} | ({} if architecture == DEFAULT_ARCHITECTURE else
                                                  {"architecture": architecture})
    if isinstance(config["loss"], dict):
        return {"loss": "end_to_end", "rate_weight": config["loss"]["rate_weight"], **size}
    return {"loss": config["loss"], "lmbda": config["lmbda"], **size}

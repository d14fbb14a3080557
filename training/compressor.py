"""The neural compressor: CompressAI's FactorizedPrior (Ballé et al. 2018), N/M configurable
(paper size 128/192; the shipped CPU default 64/96), with its own transforms ("factorized") or deeper residual ones
("residual") for output a four-layer g_a cannot read, or those with an 8×8 latent ("residual-8x8") (``ARCHITECTURES``).

    x ──g_a──▶ y ──round(y − medians)──▶ rANS ──▶ bytes ──▶ rANS⁻¹ ──+ medians──▶ ŷ ──g_s──▶ x̂

Inputs are [0, 1] images (the perturbed image after de-normalisation). A checkpoint may hold a latent
codebook (``training/latent_codebook.py``): g_a then ends by choosing one of its K latents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from compressai.layers import ResidualBlock, ResidualBlockUpsample, ResidualBlockWithStride, conv3x3, subpel_conv3x3
from compressai.models import FactorizedPrior
from torch import nn

from pmc2.training.records import shipping_weights
from pmc2.runtime.latent_codebook import LatentCodebook, index_table
from pmc2.runtime.rans import EntropyTables

PAPER_N, PAPER_M = 128, 192
CPU_N, CPU_M = 64, 96  # the shipped default: trains 2-3x faster on 2 cores, 1/4 of the weights


class ResidualFactorizedPrior(FactorizedPrior):
    """FactorizedPrior's entropy model behind the residual transforms of Cheng et al.'s 2020 anchor model: stride-2
    residual blocks with GDN down, sub-pixel residual blocks with inverse GDN up; the same 16× smaller latent of M
    channels, so the wire, the tables and the codebook are as for FactorizedPrior."""

    halvings = 4  # of the image's side down to the latent's: 32×32 → 2×2

    def __init__(self, N: int, M: int) -> None:
        super().__init__(N, M)
        inner = self.halvings - 1
        self.g_a = nn.Sequential(*[layer for stage in range(inner) for layer in (
            ResidualBlockWithStride(3 if stage == 0 else N, N), ResidualBlock(N, N))], conv3x3(N, M, stride=2))
        self.g_s = nn.Sequential(ResidualBlock(M, N), *[layer for _ in range(inner) for layer in (
            ResidualBlockUpsample(N, N), ResidualBlock(N, N))], subpel_conv3x3(N, 3, 2))


class FinerResidualFactorizedPrior(ResidualFactorizedPrior):
    """The residual transforms with two halvings fewer: an 8×8 latent (16× the symbols of the 2×2 one), for images
    whose content the target needs more of than a 2×2 latent can say (DAPter's)."""

    halvings = 2


ARCHITECTURES: dict[str, type[FactorizedPrior]] = {"factorized": FactorizedPrior, "residual": ResidualFactorizedPrior,
                                                   "residual-8x8": FinerResidualFactorizedPrior}
DEFAULT_ARCHITECTURE = "factorized"  # every checkpoint that names none


def build_compressor(n: int = PAPER_N, m: int = PAPER_M, architecture: str = DEFAULT_ARCHITECTURE) -> FactorizedPrior:
    return ARCHITECTURES[architecture](N=n, M=m)


@torch.no_grad()
def latent_size(model: FactorizedPrior, image_size: int = 32) -> tuple[int, int]:
    """The latent's height and width for an image_size² image."""
    height, width = model.g_a(torch.zeros(1, 3, image_size, image_size)).shape[-2:]
    return int(height), int(width)


def architecture_of(model: FactorizedPrior) -> str:
    name = next((name for name, kind in ARCHITECTURES.items() if type(model) is kind), None)
    if name is None:
        raise ValueError(f"{type(model).__name__} is no compressor architecture: add it to ARCHITECTURES")
    return name


def shape_of(checkpoint: dict) -> tuple[str, int, int]:
    """(architecture, N, M) of a compressor checkpoint; one that names no architecture has the default."""
    return checkpoint.get("architecture", DEFAULT_ARCHITECTURE), checkpoint["n"], checkpoint["m"]


def compressor_for(checkpoint: dict) -> FactorizedPrior:
    """An untrained compressor of a checkpoint's architecture and size (its weights not loaded)."""
    architecture, n, m = shape_of(checkpoint)
    return build_compressor(n, m, architecture)


TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")
CODEBOOK_KEY = "latent_codebook"  # {"symbols": int16 [K, M, h, w], "weight": [K, M·h·w], "bias": [K]} in a checkpoint


class CodebookAnalysis(nn.Sequential):
    """g_a's layers, then the codebook latent (symbols + medians, so coding rounds to it) of the highest-scoring
    entry under a linear rule on y: scores = y·Wᵀ + b."""

    def __init__(self, layers: nn.Sequential, entries: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__(*layers)
        self.register_buffer("entries", entries.float(), persistent=False)
        self.register_buffer("weight", weight.float(), persistent=False)
        self.register_buffer("bias", bias.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = super().forward(x).flatten(1) @ self.weight.T + self.bias
        return self.entries[scores.argmax(1)]


def install_codebook(model: FactorizedPrior, codebook: dict[str, torch.Tensor]) -> None:
    """Make ``model.g_a`` end by choosing a codebook latent (the medians are added to the symbols here)."""
    medians = model.entropy_bottleneck._get_medians().detach()  # [1, M, 1, 1]
    model.g_a = CodebookAnalysis(model.g_a, codebook["symbols"].float() + medians, codebook["weight"], codebook["bias"])


def latent_codebook_of(model: FactorizedPrior, class_counts: np.ndarray) -> LatentCodebook | None:
    """``model``'s latent codebook as the wire carries it (runtime.latent_codebook): its entries' symbols and an index
    table fitted to ``class_counts`` (entry k is class k's); None if its g_a ends with no codebook."""
    if not isinstance(model.g_a, CodebookAnalysis):
        return None
    medians = model.entropy_bottleneck._get_medians().detach()
    entries = torch.round(model.g_a.entries - medians).to(torch.int16).numpy()
    if len(class_counts) != len(entries):
        raise ValueError(f"{len(class_counts)} class counts for a codebook of {len(entries)} entries")
    return LatentCodebook(entries, index_table(class_counts))


class MissingEntropyTables(ValueError):
    """A compressor checkpoint without its integer CDF tables (they are never recomputed at load)."""


def save_compressor(model: FactorizedPrior, path: Path, metadata: dict) -> None:
    """Write a trained compressor with float16 weights and its entropy tables.

    The tables are computed here, once, from the float16 weights the checkpoint holds (CompressAI's
    ``update()`` is float math whose last bits depend on the CPU); every later reader takes them as
    stored, so edge and cloud agree on the bytes whatever CPU computed them."""
    model.load_state_dict(shipping_weights(model.state_dict()))
    model.update(force=True)
    torch.save({"n": model.N, "m": model.M, "architecture": architecture_of(model), **metadata,
                "state_dict": shipping_weights(model.state_dict())}, path)


def clear_entropy_tables(model: FactorizedPrior) -> None:
    """Empty the model's table buffers, so that a state dict with tables of any length (or none) loads into it."""
    for name in TABLE_BUFFERS:
        setattr(model.entropy_bottleneck, name, torch.empty(0, dtype=torch.int32))


def load_compressor(path: Path, with_codebook: bool = True) -> FactorizedPrior:
    """Rebuild a compressor from a checkpoint, with the entropy tables (never recomputed) and, unless
    ``with_codebook`` is False, the latent codebook stored in it."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    stored = {name: checkpoint["state_dict"].get(f"entropy_bottleneck.{name}") for name in TABLE_BUFFERS}
    if any(table is None or table.numel() == 0 for table in stored.values()):
        raise MissingEntropyTables(f"{path} holds no entropy tables; store them once with "
                                   "`python -m pmc2.export.store_entropy_tables`")
    model = compressor_for(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    if with_codebook and CODEBOOK_KEY in checkpoint:
        install_codebook(model, checkpoint[CODEBOOK_KEY])
    return model.eval()


def entropy_tables(model: FactorizedPrior) -> EntropyTables:
    """The EntropyBottleneck's integer CDF tables and medians, as the torch-free runtime reads them."""
    bottleneck = model.entropy_bottleneck
    return EntropyTables(
        bottleneck._quantized_cdf.numpy().astype(np.int32), bottleneck._cdf_length.numpy().astype(np.int32),
        bottleneck._offset.numpy().astype(np.int32),
        bottleneck._get_medians().detach().reshape(-1).numpy().astype(np.float32),
    )

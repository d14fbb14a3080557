"""The learned-inverse attack: a U-Net trained on (view, original) pairs of public training images.

    attacker's training images ──the pair's own models──▶ views ──┐
                                                       originals ─┴─▶ U-Net (MSE) ──▶ reconstruct(view)

Kerckhoffs: the attacker knows (or can query) the generator and the compressor and holds public images.
Trained networks are cached under ``runs/privacy_attacks`` with the sha256 of the models they attack, and
reused until those models change (or ``retrain``); a cached file is never shipped (they are big and quick
to retrain), but its record of command, seed, data hash and training loss goes into the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from pmc2.training.data import denormalize, normalize
from pmc2.training.generator import PerturbationGenerator, UNetTrainingConfig
from pmc2.training.train_generator import warmup_cosine


@dataclass
class InverseAttackConfig(UNetTrainingConfig):
    """The defaults of ``UNetTrainingConfig``: 8 epochs of 128, AdamW at 2e-3, bf16 where the CPU has it."""


class FeatureInverse(nn.Sequential):
    """An inverse network for feature maps at half the image's resolution (FaceMix's mixtures): convolutions,
    a ×2 upsampling, convolutions, a normalised image out."""

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__(
            nn.Conv2d(channels, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1), nn.GELU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, 3, 3, padding=1),
        )


def train_inverse(views: torch.Tensor, originals: torch.Tensor, config: InverseAttackConfig,
                  description: str = "inverse attack", network: nn.Module | None = None,
                  prepare: Callable[[torch.Tensor], torch.Tensor] = normalize) -> tuple[nn.Module, list[float]]:
    """An inverse network (default: a U-Net) from views (``prepare``d: [0, 1] images are normalised) to [0, 1]
    originals; returns it and its loss per epoch. Image views are flipped with their originals at random."""
    torch.manual_seed(config.seed)
    rng = torch.Generator().manual_seed(config.seed)
    network = (network or PerturbationGenerator(config.base_width)).to(memory_format=torch.channels_last)
    flips_with_the_image = views.shape[-1] == originals.shape[-1]
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(views) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.epochs * steps_per_epoch, max(1, steps_per_epoch // 2)))
    losses = []
    for epoch in range(config.epochs):
        network.train()
        order, total = torch.randperm(len(views), generator=rng), 0.0
        progress = tqdm(range(steps_per_epoch), desc=f"{description} epoch {epoch + 1}/{config.epochs}", leave=False)
        for step in progress:
            picked = order[step * config.batch_size : (step + 1) * config.batch_size]
            flip = (torch.rand(len(picked), generator=rng) < 0.5) & flips_with_the_image
            view, original = (torch.where(flip.view(-1, 1, 1, 1), t[picked].flip(3), t[picked]) for t in (views, originals))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                output = network(prepare(view).contiguous(memory_format=torch.channels_last))
            loss = torch.nn.functional.mse_loss(denormalize(output.float()), original)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(picked)
            progress.set_postfix(mse=f"{total / min(len(views), (step + 1) * config.batch_size):.4f}")
        losses.append(total / len(views))
    return network.eval().requires_grad_(False), losses


@torch.inference_mode()
def reconstruct(network: nn.Module, views: torch.Tensor, chunk: int = 500,
                prepare: Callable[[torch.Tensor], torch.Tensor] = normalize) -> torch.Tensor:
    return torch.cat([denormalize(network(prepare(views[start : start + chunk]))).clamp(0, 1)
                      for start in range(0, len(views), chunk)])


def cached_inverse(cache: Path, key: dict, views: torch.Tensor, originals: torch.Tensor, config: InverseAttackConfig,
                   retrain: bool, description: str) -> tuple[PerturbationGenerator, dict]:
    """The inverse network for ``key`` (which models, which view, which data): from the cache when it was
    trained for exactly that key and config, otherwise trained now and cached. Returns it and its record."""
    record = {"key": key, "config": asdict(config)}
    cached = cache.with_suffix(".json")
    if not retrain and cache.exists() and cached.exists():
        stored = json.loads(cached.read_text())
        if {k: stored[k] for k in ("key", "config")} == record:
            network = PerturbationGenerator(config.base_width)
            network.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
            return network.eval().requires_grad_(False), stored
    network, losses = train_inverse(views, originals, config, description)
    record["train_mse_per_epoch"] = losses
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), cache)
    cached.write_text(json.dumps(record, indent=2) + "\n")
    return network, record

"""The MMSys'22 generator objective and the bounded variants we train with.

    loss = w_t·CE(target(x'), y)  +  w_a·aux_term  +  w_s·similarity(x, x')

aux_term:   "neg-ce" = −CE(aux(x'), y)                        (the paper; unbounded below)
            "hinge"  = mean(max(0, margin − CE_i(aux(x'), y)))  (stops pushing once aux is wrong enough)
similarity: "signed" = mean SSIM (the paper)   "abs" = mean |SSIM| (does not reward inverted images)
SSIM is computed on [0, 1] images (pytorch-msssim), in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_msssim import ssim
from torch import nn

from pmc2.export.data import denormalize


@dataclass
class PerturbationLossConfig:
    target_weight: float = 1.0
    aux_weight: float = 1.0
    similarity_weight: float = 0.5
    aux_term: str = "hinge"
    aux_margin: float = 3.0
    similarity: str = "abs"

    def __post_init__(self) -> None:
        if self.aux_term not in ("neg-ce", "hinge"):
            raise ValueError(f"aux_term must be 'neg-ce' or 'hinge', got {self.aux_term!r}")
        if self.similarity not in ("signed", "abs"):
            raise ValueError(f"similarity must be 'signed' or 'abs', got {self.similarity!r}")


def per_image_ssim(original: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """SSIM of each pair of normalised images, measured on their [0, 1] pixels."""
    return ssim(
        denormalize(original.float()).clamp(0, 1),
        denormalize(perturbed.float()).clamp(0, 1),
        data_range=1.0,
        size_average=False,
    )


def perturbation_loss(
    config: PerturbationLossConfig,
    target_logits: torch.Tensor,
    aux_logits: torch.Tensor,
    labels: torch.Tensor,
    similarity: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Total loss and its terms (all scalars)."""
    target_ce = nn.functional.cross_entropy(target_logits.float(), labels)
    aux_ce = nn.functional.cross_entropy(aux_logits.float(), labels, reduction="none")
    if config.aux_term == "neg-ce":
        aux_term = -aux_ce.mean()
    else:
        aux_term = torch.relu(config.aux_margin - aux_ce).mean()
    similarity_term = similarity.abs().mean() if config.similarity == "abs" else similarity.mean()
    total = (
        config.target_weight * target_ce + config.aux_weight * aux_term + config.similarity_weight * similarity_term
    )
    return {"loss": total, "target_ce": target_ce, "aux_ce": aux_ce.mean(), "similarity": similarity_term}

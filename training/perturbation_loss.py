"""The image-to-image protectors' objectives, by name (``OBJECTIVES``).

"mmsys22", the MMSys'22 generator objective and the bounded variants we train with:

    loss = w_t·CE(target(x'), y)  +  w_a·aux_term  +  w_s·similarity(x, x')

aux_term:   "neg-ce" = −CE(aux(x'), y)                        (the paper; unbounded below)
            "hinge"  = mean(max(0, margin − CE_i(aux(x'), y)))  (stops pushing once aux is wrong enough)
similarity: "signed" = mean SSIM (the paper)   "abs" = mean |SSIM| (does not reward inverted images)

"dapter", DAPter's data-abuse-prevention loss (WWW'21, Eq. 1–3), with the flat grey image I₁₂₈:

    loss = λ·mean |x' − I₁₂₈|₁  +  (1 − λ)·CE(target(x'), y)        (λ = 0.9 in the paper)

SSIM is computed on [0, 1] images (pytorch-msssim), in float32. Validation measures every term for every
objective, so runs of both can be compared; a training step computes the auxiliary classifier and SSIM only
when its objective trains on them (``Objective.uses_aux``; DAPter's steps are about a third cheaper without).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pytorch_msssim import ssim
from torch import nn

from pmc2.training.data import denormalize


GREY_REFERENCE = 128 / 255  # DAPter's I₁₂₈, in [0, 1] pixels


@dataclass
class PerturbationLossConfig:
    target_weight: float = 1.0
    aux_weight: float = 1.0
    similarity_weight: float = 0.5
    aux_term: str = "hinge"
    aux_margin: float = 3.0
    similarity: str = "abs"
    objective: str = "mmsys22"
    dapter_lambda: float = 0.9

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
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


@dataclass
class ProtectorOutputs:
    """One batch through a protector and the frozen classifiers (images normalised, as the models take them)."""

    perturbed: torch.Tensor
    target_logits: torch.Tensor
    aux_logits: torch.Tensor | None  # None: not computed (a training step of an objective that does not use it)
    labels: torch.Tensor
    similarity: torch.Tensor | None  # per-image SSIM(x, x'); None as aux_logits


def _measured_terms(config: PerturbationLossConfig, outputs: ProtectorOutputs) -> dict[str, torch.Tensor]:
    """What the objectives use: target CE, L1 to DAPter's grey, and (when computed) per-image aux CE and the
    similarity term."""
    terms = {
        "target_ce": nn.functional.cross_entropy(outputs.target_logits.float(), outputs.labels),
        "grey_l1": (denormalize(outputs.perturbed.float()) - GREY_REFERENCE).abs().mean(),
    }
    if outputs.aux_logits is not None:
        terms["aux_ce_per_image"] = nn.functional.cross_entropy(outputs.aux_logits.float(), outputs.labels,
                                                                reduction="none")
    if outputs.similarity is not None:
        similarity = outputs.similarity.abs() if config.similarity == "abs" else outputs.similarity
        terms["similarity"] = similarity.mean()
    return terms


def mmsys22_loss(config: PerturbationLossConfig, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    aux_ce = terms["aux_ce_per_image"]
    aux_term = -aux_ce.mean() if config.aux_term == "neg-ce" else torch.relu(config.aux_margin - aux_ce).mean()
    return config.target_weight * terms["target_ce"] + config.aux_weight * aux_term \
        + config.similarity_weight * terms["similarity"]


def dapter_loss(config: PerturbationLossConfig, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    return config.dapter_lambda * terms["grey_l1"] + (1 - config.dapter_lambda) * terms["target_ce"]


@dataclass(frozen=True)
class Objective:
    loss: Callable[[PerturbationLossConfig, dict[str, torch.Tensor]], torch.Tensor]
    uses_aux: bool  # trains on the auxiliary classifier's output and SSIM(x, x')


OBJECTIVES = {"mmsys22": Objective(mmsys22_loss, uses_aux=True), "dapter": Objective(dapter_loss, uses_aux=False)}


def perturbation_loss(config: PerturbationLossConfig, outputs: ProtectorOutputs) -> dict[str, torch.Tensor]:
    """Total loss of the configured objective and every term measured (all scalars)."""
    terms = _measured_terms(config, outputs)
    loss = OBJECTIVES[config.objective].loss(config, terms)
    if "aux_ce_per_image" in terms:
        terms["aux_ce"] = terms.pop("aux_ce_per_image").mean()
    return {"loss": loss, **terms}

"""The end-to-end objective: generator and compressor trained together so the link carries the label.

    x (phone JPEG) ──generator──▶ x' ──g_a──▶ y ──round (straight-through)──▶ ŷ ──g_s──▶ x̂
    loss = CE(target(x̂)) + λ(t)·bits(y) + w_aux·hinge(aux(shift/erase(x̂))) + w_inv·leak(inverse(x̂), x)
           [+ CE(target(x')) + w_d·MSE(x̂, x')  when x' itself travels on the pixel links]

``tie`` says which image the PNG/JPEG links carry:
  "decoded"     the edge's own decode x̂ of the bitstream (every link carries the same image, so no link
                holds more than the bitstream); target and aux see only x̂.
  "distortion"  x' itself, held close to x̂ by the distortion term.
``leak`` is what an inverse network trained alongside recovers beyond the label-only baseline (the
class-mean image): mean max(0, MSE(class mean, x) − MSE(inverse(x̂), x)) per image. Zero once the
attacker does no better than knowing the label.
The MMSys'22 objective stays available through ``train_generator.py`` + ``train_compressor.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compressai.models import FactorizedPrior
from torch import nn

from pmc2.training.data import denormalize, erase_squares, normalize
from pmc2.training.train_compressor import forward_with_rounded_latent, straight_through

TIES = ("decoded", "distortion")


@dataclass
class EndToEndLossConfig:
    rate_weight: float = 0.02  # λ per bit of one image's latent
    target_weight: float = 1.0
    aux_weight: float = 0.5
    aux_margin: float = 3.0
    inverse_weight: float = 1.0
    tie: str = "decoded"
    distortion_weight: float = 100.0  # only with tie="distortion"
    erase_size: int = 10  # the aux sees copies with a random square of this size erased

    def __post_init__(self) -> None:
        if self.tie not in TIES:
            raise ValueError(f"tie must be one of {', '.join(TIES)}, got {self.tie!r}")


class InverseNetwork(nn.Sequential):
    """The attacker trained alongside: a small conv net from the received image back to the original."""

    def __init__(self, width: int = 32) -> None:
        super().__init__(
            nn.Conv2d(3, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid(),
        )


def shift_and_erase(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[0, 1] images rolled by up to 4 pixels and with one random size×size square set to mid-grey,
    so a fixed patch cannot be what fools the aux model."""
    dy, dx = (int(v) for v in torch.randint(-4, 5, (2,), generator=generator))
    return erase_squares(torch.roll(images, shifts=(dy, dx), dims=(2, 3)), size, generator, fill=0.5)


def bits_per_image(likelihoods: torch.Tensor) -> torch.Tensor:
    return -torch.log2(likelihoods).sum() / likelihoods.shape[0]


def per_image_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


class EndToEndObjective:
    """One training forward pass of generator, compressor, target, aux and inverse network."""

    def __init__(self, config: EndToEndLossConfig, generator: nn.Module, compressor: FactorizedPrior,
                 target: nn.Module, aux: nn.Module, inverse: InverseNetwork, class_means: torch.Tensor,
                 bf16: bool) -> None:
        self.config, self.generator, self.compressor = config, generator, compressor
        self.target, self.aux, self.inverse, self.class_means = target, aux, inverse, class_means
        self.bf16 = bf16

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def __call__(self, images_unit: torch.Tensor, labels: torch.Tensor, rate_scale: float,
                 rng: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Loss terms for a batch of [0, 1] edge inputs; ``rate_scale`` in [0, 1] warms the rate term up."""
        config = self.config
        with self._autocast():
            perturbed_normalized = self.generator(normalize(images_unit))
        perturbed = denormalize(perturbed_normalized.float()).clamp(0, 1)
        coded = forward_with_rounded_latent(self.compressor, perturbed)
        decoded = straight_through(coded["x_hat"].clamp(0, 1), coded["x_hat"])
        bits = bits_per_image(coded["likelihoods"]["y"])
        with self._autocast():
            target_logits = self.target(normalize(decoded))
            aux_logits = self.aux(normalize(shift_and_erase(decoded, config.erase_size, rng)))
            reconstruction = self.inverse(decoded)
        target_ce = nn.functional.cross_entropy(target_logits.float(), labels)
        aux_ce = nn.functional.cross_entropy(aux_logits.float(), labels, reduction="none")
        label_only = per_image_mse(self.class_means[labels], images_unit)
        leak = torch.relu(label_only - per_image_mse(reconstruction, images_unit)).mean()
        loss = (config.target_weight * target_ce + rate_scale * config.rate_weight * bits
                + config.aux_weight * torch.relu(config.aux_margin - aux_ce).mean() + config.inverse_weight * leak)
        terms = {"bits": bits, "target_ce": target_ce, "aux_ce": aux_ce.mean(), "leak": leak,
                 "target_correct": (target_logits.argmax(1) == labels).sum(),
                 "aux_correct": (aux_logits.argmax(1) == labels).sum()}
        if config.tie == "distortion":
            with self._autocast():
                pixel_ce = nn.functional.cross_entropy(self.target(perturbed_normalized).float(), labels)
            distortion = nn.functional.mse_loss(coded["x_hat"], perturbed)
            loss = loss + config.target_weight * pixel_ce + config.distortion_weight * distortion
            terms |= {"pixel_ce": pixel_ce, "distortion": distortion}
        terms["loss"] = loss
        terms["decoded"] = decoded
        return terms

    def inverse_loss(self, decoded: torch.Tensor, images_unit: torch.Tensor) -> torch.Tensor:
        """The attacker's own training loss, on a detached x̂."""
        with self._autocast():
            reconstruction = self.inverse(decoded.detach())
        return per_image_mse(reconstruction, images_unit).mean()

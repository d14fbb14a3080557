"""Start a compressor trained on one kind of image on images whose pixels spread differently.

A per-channel affine map x ↦ a·x + b that carries the new images' mean and spread onto those the compressor was
trained on is folded into the convolutions of g_a's first layer that read the image, and its inverse into g_s's last
convolution (a transposed one, or a sub-pixel one whose output channels the pixel shuffle spreads over the colours).
The latents then start at the magnitudes the entropy model knows. Without it, images with little variance (DAPter's
output: a spread of 0.03 around grey) give latents that rounding mostly erases. The fold is exact for g_s and for
g_a away from the image border (zero padding of x is not zero padding of a·x + b); training goes on from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compressai.models import FactorizedPrior
from torch import nn


@dataclass(frozen=True)
class ChannelAffine:
    """x ↦ scale·x + shift per colour channel (tensors of shape [C])."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)

    def as_record(self) -> dict[str, list[float]]:
        return {"scale": self.scale.tolist(), "shift": self.shift.tolist()}


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of NCHW images."""
    return images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3))


def matching_affine(images: torch.Tensor, reference: tuple[torch.Tensor, torch.Tensor]) -> ChannelAffine:
    """The affine map under which ``images`` have the per-channel mean and standard deviation ``reference``."""
    mean, std = channel_statistics(images)
    reference_mean, reference_std = reference
    scale = reference_std / std
    return ChannelAffine(scale, reference_mean - scale * mean)


def _image_readers(model: FactorizedPrior) -> list[nn.Conv2d]:
    """The convolutions of g_a's first layer that take the image itself (one, or a residual block's two)."""
    return [layer for layer in model.g_a[0].modules() if isinstance(layer, nn.Conv2d) and layer.in_channels == 3]


def _image_writer(model: FactorizedPrior) -> tuple[nn.Conv2d | nn.ConvTranspose2d, int, int]:
    """g_s's last convolution, the axis of its weight that indexes output channels, and how many consecutive output
    channels make one colour (a sub-pixel convolution's r² before its pixel shuffle)."""
    last = model.g_s[-1]
    if isinstance(last, nn.ConvTranspose2d):
        return last, 1, 1  # weight: [in, out, k, k]
    convolution, shuffle = last
    return convolution, 0, shuffle.upscale_factor**2


@torch.no_grad()
def fold_into_compressor(model: FactorizedPrior, affine: ChannelAffine) -> None:
    """Make ``model`` code x as it coded ``affine(x)`` and decode to the inverse map of what it decoded."""
    for reader in _image_readers(model):
        reader.bias += (reader.weight * affine.shift.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
        reader.weight *= affine.scale.view(1, -1, 1, 1)
    writer, axis, per_colour = _image_writer(model)
    scale, shift = affine.scale.repeat_interleave(per_colour), affine.shift.repeat_interleave(per_colour)
    writer.weight /= scale.view([-1 if dim == axis else 1 for dim in range(writer.weight.dim())])
    writer.bias -= shift
    writer.bias /= scale

"""White-box access: the target as a frozen torch module whose gradients reach the input image."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pmc2.fit.access import WHITE_BOX, TargetAccess, require_uint8_images
from pmc2.fit.input_spaces import InputSpace
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.training.data import denormalize


class FromUnitImages(nn.Module):
    """``model`` fed [0, 1] NCHW images: they are mapped into its input space first."""

    def __init__(self, model: nn.Module, space: InputSpace) -> None:
        super().__init__()
        self.model, self.space = model, space

    def forward(self, images_unit: torch.Tensor) -> torch.Tensor:
        return self.model(self.space.from_unit_torch(images_unit))


class FromNormalizedImages(nn.Module):
    """A module of [0, 1] images fed CIFAR-10-normalised ones, as the trainers feed every target they train against."""

    def __init__(self, unit_model: nn.Module) -> None:
        super().__init__()
        self.unit_model = unit_model

    def forward(self, images_normalized: torch.Tensor) -> torch.Tensor:
        return self.unit_model(denormalize(images_normalized))


class WhiteBoxTarget(TargetAccess):
    """``module``: [0, 1] NCHW float → logits, in eval mode with frozen weights."""

    kind = WHITE_BOX

    def __init__(self, via: str, model: nn.Module, space: InputSpace, batch_images: int = 256) -> None:
        super().__init__(via)
        self.module = FromUnitImages(model.eval().requires_grad_(False), space)
        self.batch_images = batch_images

    @property
    def trainable(self) -> nn.Module:
        """The target as the trainers take it: normalised images → logits, gradients reaching the input."""
        return FromNormalizedImages(self.module)

    @torch.no_grad()
    def labels(self, images_uint8: np.ndarray) -> np.ndarray:
        require_uint8_images(images_uint8)
        images = torch.from_numpy(to_unit_nchw(images_uint8))
        return torch.cat([self.module(batch).argmax(1) for batch in images.split(self.batch_images)]).numpy()

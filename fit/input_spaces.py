"""What a classifier takes as input. Every target access takes [0, 1] images and hands its model the space the
model was trained on (the names the bundle manifest uses for ``input_space``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pmc2.runtime.normalization import normalize as normalize_numpy
from pmc2.training.data import normalize as normalize_torch


@dataclass(frozen=True)
class InputSpace:
    name: str
    from_unit_numpy: Callable[[np.ndarray], np.ndarray]  # [0, 1] NCHW → the model's input
    from_unit_torch: Callable[[torch.Tensor], torch.Tensor]


def _unchanged(images):
    return images


INPUT_SPACES: dict[str, InputSpace] = {space.name: space for space in (
    InputSpace("normalized", normalize_numpy, normalize_torch),  # CIFAR-10 mean and std: this project's classifiers
    InputSpace("unit", _unchanged, _unchanged),
)}


def input_space_named(name: str) -> InputSpace:
    if name not in INPUT_SPACES:
        raise ValueError(f"unknown input space {name!r}; choose from {', '.join(INPUT_SPACES)}")
    return INPUT_SPACES[name]

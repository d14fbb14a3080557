"""Registry of every classifier this project can train, export and serve, by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from pmc2.training.facemix import FaceMixFastNet
from pmc2.training.fast_classifiers import CompactResNet, FastNet
from pmc2.training.paper_classifiers import PAPER_CLASSIFIERS
from pmc2.training.weight_shards import load_sharded

CLASSIFIERS: dict[str, Callable[[], nn.Module]] = {
    "fastnet": FastNet,
    "compact_resnet": CompactResNet,
    "facemix_fastnet": FaceMixFastNet,  # FaceMix's split, encryption-aware target (training/facemix.py)
    **PAPER_CLASSIFIERS,
}


def build_classifier(name: str) -> nn.Module:
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")
    return CLASSIFIERS[name]()


def load_target_and_aux(target: Path, aux: Path) -> tuple[nn.Module, nn.Module]:
    """The frozen classifiers a generator trains against, in channels-last memory (faster convolutions on CPU)."""
    return tuple(load_classifier(path).to(memory_format=torch.channels_last) for path in (target, aux))


def load_classifier(path: Path) -> nn.Module:
    """Rebuild a trained classifier from a checkpoint written by ``train_classifier``; eval mode, frozen."""
    checkpoint = load_sharded(path)
    model = build_classifier(checkpoint["name"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval().requires_grad_(False)

"""FaceMix (the related system): a split classifier whose cloud part only ever sees mixed features.

    edge: x ──stem, conv group 1──▶ f_i (64×16×16) ─┐ per group of S images, a fresh random orthogonal A (S×S),
          the user's private key:  m_k = Σ_i A_ki f_i ─────────────────────────────────────────────────────▶ cloud
    cloud: m_k ──conv groups 2, 3, global max-pool──▶ h_k (256) ───────────────────────────────────────────▶ edge
    edge: ĥ_i = Σ_k A_ki h_k  (Aᵀ, the inverse of an orthogonal A) ──linear head──▶ logits_i

The cloud part is not linear, so demixing is exact only for a linear one; encryption-aware training (every
forward pass mixes with fresh random orthogonal matrices, as FaceMix trains) teaches it to behave nearly
linearly on mixtures. The layers are FastNet's (``fast_classifiers``), so the network trains with the same
recipe: ``python training/train_classifier.py --model facemix_fastnet``. ``export/to_onnx.py`` writes its three
parts as separate models (``facemix_edge``, ``facemix_cloud``, ``facemix_head``); ``runtime/facemix.py`` runs them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pmc2.training.fast_classifiers import FastNet
from pmc2.runtime.facemix import group_keys


def mix(features: torch.Tensor, keys: list[torch.Tensor]) -> torch.Tensor:
    """Mix consecutive groups of ``features`` (group sizes = the keys' sizes): m = A·f per group."""
    groups = features.split([len(key) for key in keys])
    return torch.cat([torch.einsum("ki,i...->k...", key.to(group.dtype), group) for key, group in zip(keys, groups)])


def demix(outputs: torch.Tensor, keys: list[torch.Tensor]) -> torch.Tensor:
    """Undo ``mix`` with each group's transpose (exact when what ran in between was linear)."""
    return mix(outputs, [key.T for key in keys])


def fresh_keys(count: int, rng: np.random.Generator | None = None) -> list[torch.Tensor]:
    """The runtime's keys (``runtime.facemix.group_keys``) for ``count`` images, as tensors."""
    return [torch.from_numpy(key) for key in group_keys(count, rng or np.random.default_rng())]


class FaceMixFastNet(FastNet):
    """FastNet split after its first conv group; every forward pass mixes, runs the cloud part, demixes."""

    def edge_features(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (0, 1, 0, 1), mode="replicate")
        return self.layers[0](nn.functional.gelu(self.stem(x)))

    def cloud_features(self, mixed: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.layers[2](self.layers[1](mixed)), dim=(2, 3))

    def edge_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features) * self.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = fresh_keys(len(x))
        return self.edge_logits(demix(self.cloud_features(mix(self.edge_features(x), keys)), keys))


# The three ONNX models of the split (export/to_onnx.py): part name -> (method, input, output, example shape)
SPLIT_PARTS: dict[str, tuple[str, str, str, tuple[int, ...]]] = {
    "edge": ("edge_features", "images", "features", (1, 3, 32, 32)),
    "cloud": ("cloud_features", "mixed", "mixed_outputs", (1, 64, 16, 16)),
    "head": ("edge_logits", "demixed", "logits", (1, 256)),
}


class FaceMixPart(nn.Module):
    """One part of a trained FaceMixFastNet (``SPLIT_PARTS``) as a module of its own, for export."""

    def __init__(self, model: FaceMixFastNet, part: str) -> None:
        super().__init__()
        self.model, self.method = model.eval(), SPLIT_PARTS[part][0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)

"""Two CPU-trainable CIFAR-10 classifiers: the default target and the default auxiliary model.

FastNet (target, after the airbench recipe)      CompactResNet (auxiliary, ResNet-9 layout at half width)
  conv3x3 24 -> GELU                                conv3x3 32 -> BN -> ReLU
  [conv -> maxpool -> BN -> GELU -> conv -> BN      64 + pool, residual(64)
   -> GELU] x widths (64, 256, 256)                 128 + pool
  global max-pool -> linear(no bias) * 1/9          256 + pool, residual(256) -> max-pool -> linear
"""

from __future__ import annotations

import torch
from torch import nn


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with a frozen unit scale and a learned shift (airbench style)."""
    norm = nn.BatchNorm2d(channels, momentum=0.4, eps=1e-12)
    norm.weight.requires_grad_(False)
    return norm


class ConvGroup(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            _batch_norm(out_channels),
            nn.GELU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _batch_norm(out_channels),
            nn.GELU(),
        )


class FastNet(nn.Module):
    """airbench-style network: a whitening stem, three conv groups, max-pool head."""

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256), num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True)
        self.layers = nn.Sequential(
            ConvGroup(24, widths[0]), ConvGroup(widths[0], widths[1]), ConvGroup(widths[1], widths[2])
        )
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.logit_scale = 1 / 9

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the 2x2 stem to a ZCA-like whitening of image patches (12 eigen-filters, +/- pairs)."""
        patches = images.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3, 2, 2).float()
        flat = patches.view(len(patches), -1)
        covariance = (flat.T @ flat) / len(flat)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T.reshape(-1, 3, 2, 2)) / torch.sqrt(eigenvalues.view(-1, 1, 1, 1) + eps)
        self.stem.weight.copy_(torch.cat([filters, -filters]))
        self.stem.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (0, 1, 0, 1), mode="replicate")
        x = self.layers(nn.functional.gelu(self.stem(x)))
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) * self.logit_scale


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(channels, channels), _conv_bn_relu(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CompactResNet(nn.Module):
    """The DAWNBench ResNet-9 layout, widths configurable (default: half of 64/128/256/512)."""

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 128, 256), num_classes: int = 10) -> None:
        super().__init__()
        prep, layer1, layer2, layer3 = widths
        self.features = nn.Sequential(
            _conv_bn_relu(3, prep),
            _conv_bn_relu(prep, layer1),
            nn.MaxPool2d(2),
            Residual(layer1),
            _conv_bn_relu(layer1, layer2),
            nn.MaxPool2d(2),
            _conv_bn_relu(layer2, layer3),
            nn.MaxPool2d(2),
            Residual(layer3),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(layer3, num_classes, bias=False)
        self.logit_scale = 1 / 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.logit_scale

"""The MMSys'22 protective-perturbation generator: a U-Net that adds δ to a normalised image.

    x ──inc──▶ d1 ──▶ d2 ──▶ d3 ──▶ d4 (bottom, 16·base channels)
    │    └──────┴──────┴──────┴── skip connections ──▶ up4 … up1 ──1x1──▶ δ
    └────────────────────────────────────────────────▶ x' = clamp(x + δ)

DoubleConv blocks (3x3 conv, BN, ReLU, twice), max-pool down, transposed-conv up. At base width 32
the channels run 32 → 512 and the model has 7.77M parameters. The clamp keeps x' inside the
normalised image of the [0, 1] pixel cube, so x' is always a valid picture. ``PixelOutput`` is the
form that is exported and served: normalised image in, perturbed [0, 1] image out (what the codecs
and the pp-baseline upload take).
"""

from __future__ import annotations

import torch
from torch import nn

from pmc2.runtime.normalization import CIFAR10_MEAN, CIFAR10_STD


class DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class PerturbationGenerator(nn.Module):
    """U-Net generator; input and output are normalised NCHW images."""

    def __init__(self, base_width: int = 32) -> None:
        super().__init__()
        widths = [base_width * 2**i for i in range(5)]
        self.base_width = base_width
        self.inc = DoubleConv(3, widths[0])
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1]) for i in range(4))
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i]) for i in reversed(range(4)))
        self.outc = nn.Conv2d(widths[0], 3, kernel_size=1)
        mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
        self.register_buffer("lower", (0 - mean) / std, persistent=False)
        self.register_buffer("upper", (1 - mean) / std, persistent=False)

    def perturbation(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in self.ups:
            h = up(h, skips.pop())
        return self.outc(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(x + self.perturbation(x), self.lower), self.upper)


class PixelOutput(nn.Module):
    """The generator as the edge runs it: normalised image in, perturbed image in [0, 1] pixels out."""

    def __init__(self, generator: PerturbationGenerator) -> None:
        super().__init__()
        self.generator = generator
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.generator(x) * self.std + self.mean).clamp(0, 1)

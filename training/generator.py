"""Protective-perturbation generators: U-Nets from a normalised image to a perturbed one.

``unet`` (MMSys'22): a plain U-Net that adds δ to the image:

    x ──inc──▶ d1 ──▶ d2 ──▶ d3 ──▶ d4 (bottom, 16·base channels)
    │    └──────┴──────┴──────┴── skip connections ──▶ up4 … up1 ──1x1──▶ δ
    └────────────────────────────────────────────────▶ x' = clamp(x + δ)

DoubleConv blocks (3x3 conv, BN, ReLU, twice), max-pool down, transposed-conv up. At base width 32
the channels run 32 → 512 and the model has 7.77M parameters. The clamp keeps x' inside the
normalised image of the [0, 1] pixel cube, so x' is always a valid picture. ``PixelOutput`` is the
form that is exported and served: normalised image in, perturbed [0, 1] image out (what the codecs
and the pp-baseline upload take).

``feature_unet``: a U-Net whose contracting path is FastNet's feature extractor (initialised from a
trained FastNet, so the generator starts out knowing the class) and whose expanding path draws x'
from scratch (no identity path from x to x'):

    x ──stem──▶ e0 (24, 32²) ──▶ e1 (64, 16²) ──▶ e2 (256, 8²) ──▶ e3 (256, 4²)
                 └───────────────┴───────────────┴── skips ──▶ up ×3 ──1x1──▶ x' (inside the pixel cube)

``dapter`` (DAPter, WWW'21): the related system's lightweight converter, eight convolutions in a
symmetric down/up shape with one copy connection (the 3rd layer's output joins the 8th layer's input);
trained with DAPter's own loss (``training/perturbation_loss.py``), it runs in the generator's slot:

    x ─c1─▶ (b, 32²) ─c2─▶ (2b, 16²) ─c3─▶ (2b, 16²) ─c4─▶ (4b, 8²) ─c5─▶ (4b, 8²) ─c6↑─▶ (2b, 16²) ─c7─▶ (2b, 16²)
                                          └──────────────── copy ─────────────────────────────┴─concat─c8↑─▶ x' (32²)

``load_generator`` rebuilds any of them from a checkpoint, which names its architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pmc2.machine import bf16_is_fast
from pmc2.training.fast_classifiers import FastNet
from pmc2.runtime.normalization import CIFAR10_MEAN, CIFAR10_STD


@dataclass
class UNetTrainingConfig:
    """What every U-Net this project trains (generator, inverse attack) is trained with; each sets its defaults."""

    base_width: int = 16
    epochs: int = 8
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    bf16: bool = field(default_factory=bf16_is_fast)  # bf16 autocast where the CPU has it in hardware
    seed: int = 0


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
    """Double the resolution, concatenate the skip, DoubleConv (skip width defaults to in/2 as in a U-Net)."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int | None = None) -> None:
        super().__init__()
        skip_channels = in_channels // 2 if skip_channels is None else skip_channels
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(skip_channels + in_channels // 2, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class PixelCube(nn.Module):
    """Bounds of the normalised image of the [0, 1] pixel cube, as buffers."""

    def __init__(self) -> None:
        super().__init__()
        mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
        self.register_buffer("lower", (0 - mean) / std, persistent=False)
        self.register_buffer("upper", (1 - mean) / std, persistent=False)

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(x, self.lower), self.upper)

    def squash(self, x: torch.Tensor) -> torch.Tensor:
        """Any real tensor into the cube (a sigmoid per pixel)."""
        return self.lower + (self.upper - self.lower) * torch.sigmoid(x)


class PerturbationGenerator(PixelCube):
    """U-Net generator; input and output are normalised NCHW images."""

    architecture = "unet"

    def __init__(self, base_width: int = 32) -> None:
        super().__init__()
        widths = [base_width * 2**i for i in range(5)]
        self.base_width = base_width
        self.inc = DoubleConv(3, widths[0])
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1]) for i in range(4))
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i]) for i in reversed(range(4)))
        self.outc = nn.Conv2d(widths[0], 3, kernel_size=1)

    def perturbation(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in self.ups:
            h = up(h, skips.pop())
        return self.outc(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clamp(x + self.perturbation(x))


class FeatureUNet(PixelCube):
    """U-Net with FastNet's feature extractor as its contracting path; draws x' without adding it to x."""

    architecture = "feature_unet"

    def __init__(self, base_width: int = 32) -> None:
        super().__init__()
        self.base_width = base_width
        encoder = FastNet()
        self.stem, self.groups = encoder.stem, encoder.layers
        stem_width = encoder.stem.out_channels
        widths = [group[0].out_channels for group in encoder.layers]  # 64, 256, 256
        decoder = [4 * base_width, 2 * base_width, base_width]
        self.up3 = Up(widths[2], decoder[0], skip_channels=widths[1])
        self.up2 = Up(decoder[0], decoder[1], skip_channels=widths[0])
        self.up1 = Up(decoder[1], decoder[2], skip_channels=stem_width)
        self.outc = nn.Conv2d(decoder[2], 3, kernel_size=1)

    def init_from_fastnet(self, fastnet: FastNet) -> None:
        """Copy a trained FastNet's stem and conv groups into the contracting path."""
        self.stem.load_state_dict(fastnet.stem.state_dict())
        self.groups.load_state_dict(fastnet.layers.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = nn.functional.gelu(self.stem(nn.functional.pad(x, (0, 1, 0, 1), mode="replicate")))
        e1 = self.groups[0](e0)
        e2 = self.groups[1](e1)
        e3 = self.groups[2](e2)
        return self.squash(self.outc(self.up1(self.up2(self.up3(e3, e2), e1), e0)))


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _up_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class DapterConverter(PixelCube):
    """DAPter's converter: eight convolutions, one copy connection (layer 3 → layer 8); output inside the cube."""

    architecture = "dapter"

    def __init__(self, base_width: int = 16) -> None:
        super().__init__()
        b = self.base_width = base_width
        self.down = nn.Sequential(_conv_bn_relu(3, b), _conv_bn_relu(b, 2 * b, stride=2), _conv_bn_relu(2 * b, 2 * b))
        self.middle = nn.Sequential(_conv_bn_relu(2 * b, 4 * b, stride=2), _conv_bn_relu(4 * b, 4 * b),
                                    _up_bn_relu(4 * b, 2 * b), _conv_bn_relu(2 * b, 2 * b))
        self.out = nn.ConvTranspose2d(4 * b, 3, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        copied = self.down(x)
        return self.squash(self.out(torch.cat([copied, self.middle(copied)], dim=1)))


GENERATORS: dict[str, Callable[[int], PixelCube]] = {
    PerturbationGenerator.architecture: PerturbationGenerator,
    FeatureUNet.architecture: FeatureUNet,
    DapterConverter.architecture: DapterConverter,
}


def build_generator(architecture: str, base_width: int) -> PixelCube:
    if architecture not in GENERATORS:
        raise ValueError(f"unknown generator architecture {architecture!r}; choose from {', '.join(GENERATORS)}")
    return GENERATORS[architecture](base_width)


def load_generator(path: Path) -> PixelCube:
    """A trained generator from its checkpoint (eval mode, frozen); old checkpoints are plain U-Nets."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    generator = build_generator(checkpoint.get("architecture", PerturbationGenerator.architecture),
                                checkpoint["base_width"])
    generator.load_state_dict(checkpoint["state_dict"])
    generator.link_image = checkpoint.get("link_image", "perturbed")  # what the pixel links carry
    return generator.eval().requires_grad_(False)


class PixelOutput(nn.Module):
    """The generator as the edge runs it: normalised image in, perturbed image in [0, 1] pixels out."""

    def __init__(self, generator: PerturbationGenerator) -> None:
        super().__init__()
        self.generator = generator
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.generator(x) * self.std + self.mean).clamp(0, 1)

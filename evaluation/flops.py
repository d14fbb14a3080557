"""Forward cost per 32x32 image, counted by torch (2 FLOPs per multiply-add), of what the edge and the cloud run.

    edge: the protector in the generator's slot + g_a (what the neural link runs)      cloud: g_s + the target
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from pmc2.training.classifiers import load_classifier
from pmc2.training.compressor import load_compressor
from pmc2.training.generator import load_generator
from pmc2.training.pairs import ModelPair

IMAGE = (1, 3, 32, 32)


def gflops(module: torch.nn.Module, example: torch.Tensor) -> float:
    """Floating-point operations of one forward pass, in GFLOPs."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(example)
    return counter.get_total_flops() / 1e9


def pair_gflops(pair: ModelPair) -> dict[str, float]:
    """GFLOPs per image of the pair's edge (its protector + g_a), its target, and g_s on the cloud."""
    image = torch.zeros(IMAGE)
    compressor = load_compressor(pair.compressor)
    latent = compressor.g_a(image)
    return {"edge": gflops(load_generator(pair.generator), image) + gflops(compressor.g_a, image),
            "target": gflops(load_classifier(pair.target), image), "g_s": gflops(compressor.g_s, latent)}

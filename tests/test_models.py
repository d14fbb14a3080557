"""Model shapes and parameter counts against MMSys'22 Table 1 and the papers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pmc2.training.classifiers import CLASSIFIERS, build_classifier
from pmc2.training.compressor import build_compressor
from pmc2.training.generator import PerturbationGenerator

TABLE_1_MILLIONS = {
    "vgg13_bn": 28.334, "vgg16_bn": 33.647, "resnet18": 11.174, "resnet34": 21.282,
    "densenet121": 6.956, "mobilenet_v2": 2.237, "googlenet": 5.491, "inception_v3": 21.640,
}
# Forward FLOPs of one 3x32x32 image, counted by torch.utils.flop_counter on PyTorch_CIFAR10's own
# cifar10_models at commit 641cac2 (the reference definitions; loaded with our modules' state-dict keys,
# they give identical logits). Max-pools count no FLOPs, so a dropped stem pool shows up as 4x the
# cost of everything after it (the old resnet18: 1.111 GFLOP).
REFERENCE_GFLOPS = {
    "vgg13_bn": 0.4944, "vgg16_bn": 0.6642, "resnet18": 0.2804, "resnet34": 0.5824,
    "densenet121": 0.4468, "mobilenet_v2": 0.1760, "googlenet": 2.6743, "inception_v3": 6.9209,
}


def _millions(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize("name", sorted(TABLE_1_MILLIONS))
def test_paper_classifier_parameter_count_within_one_percent(name: str) -> None:
    assert _millions(build_classifier(name)) == pytest.approx(TABLE_1_MILLIONS[name], rel=0.01)


@pytest.mark.parametrize("name", sorted(REFERENCE_GFLOPS))
def test_paper_classifier_forward_flops_match_pytorch_cifar10_within_one_percent(name: str) -> None:
    model = build_classifier(name).eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, 32, 32))
    assert counter.get_total_flops() / 1e9 == pytest.approx(REFERENCE_GFLOPS[name], rel=0.01)


def test_paper_resnet_and_densenet_keep_their_stem_max_pool() -> None:
    """Parameter-free, so invisible to the two counts above unless the pool's absence moves the FLOPs."""
    assert isinstance(build_classifier("resnet18").maxpool, torch.nn.MaxPool2d)
    assert isinstance(build_classifier("densenet121").features.pool0, torch.nn.MaxPool2d)
    for pool in ("maxpool3", "maxpool4"):
        layer = getattr(build_classifier("googlenet"), pool)
        assert (layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode) == (3, 2, 1, False)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_maps_cifar_batch_to_ten_logits(name: str) -> None:
    model = build_classifier(name).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_classifier_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="resnet1000"):
        build_classifier("resnet1000")


def test_generator_has_paper_size_and_stays_in_the_pixel_cube() -> None:
    generator = PerturbationGenerator(base_width=32).eval()
    assert _millions(generator) == pytest.approx(7.77, rel=0.01)
    with torch.inference_mode():
        out = generator(torch.randn(4, 3, 32, 32) * 5)
    assert out.shape == (4, 3, 32, 32)
    assert torch.all(out >= generator.lower - 1e-6) and torch.all(out <= generator.upper + 1e-6)


def test_generator_width_is_configurable() -> None:
    assert _millions(PerturbationGenerator(base_width=16)) == pytest.approx(7.77 / 4, rel=0.01)


def test_compressor_latent_of_a_cifar_image_is_2x2() -> None:
    compressor = build_compressor(128, 192).eval()
    with torch.inference_mode():
        assert compressor.g_a(torch.rand(1, 3, 32, 32)).shape == (1, 192, 2, 2)

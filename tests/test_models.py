"""Model shapes and parameter counts against MMSys'22 Table 1 and the papers."""

from __future__ import annotations

import pytest
import torch

from pmc2.export.classifiers import CLASSIFIERS, build_classifier
from pmc2.export.compressor import build_compressor
from pmc2.export.generator import PerturbationGenerator

TABLE_1_MILLIONS = {
    "vgg13_bn": 28.334, "vgg16_bn": 33.647, "resnet18": 11.174, "resnet34": 21.282,
    "densenet121": 6.956, "mobilenet_v2": 2.237, "googlenet": 5.491, "inception_v3": 21.640,
}


def _millions(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize("name", sorted(TABLE_1_MILLIONS))
def test_paper_classifier_parameter_count_within_one_percent(name: str) -> None:
    assert _millions(build_classifier(name)) == pytest.approx(TABLE_1_MILLIONS[name], rel=0.01)


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

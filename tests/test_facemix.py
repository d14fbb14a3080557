"""FaceMix's keyed mixing: exact for linear cloud parts, the split classifier trains with the usual recipe, and
the attack on its mixtures is measured beside the label-only baseline of the label it returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pmc2.evaluation.facemix import FaceMixLink, attack, cloud_view, reference_accuracy, training_recipe
from pmc2.evaluation.inverse_attack import InverseAttackConfig
from pmc2.evaluation.judges import load_judges
from pmc2.evaluation.label_only import label_only_baseline
from pmc2.training.classifiers import load_classifier
from pmc2.training.data import as_tensors, class_mean_images, to_unit
from pmc2.training.facemix import FaceMixFastNet, demix, fresh_keys, mix
from pmc2.training.pairs import DEFAULT_PAIR
from pmc2.runtime.cifar10 import load_evaluation, load_split
from pmc2.runtime.facemix import group_keys, random_orthogonal
from pmc2.runtime.image_codecs import through_phone_jpeg
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.training.train_classifier import ClassifierConfig
from pmc2.training.train_classifier import train as train_classifier


def test_keys_are_orthogonal_and_fresh() -> None:
    rng = np.random.default_rng(0)
    key = random_orthogonal(8, rng)
    np.testing.assert_allclose(key @ key.T, np.eye(8), atol=1e-5)
    assert not np.allclose(key, random_orthogonal(8, rng))
    assert [len(k) for k in group_keys(10, rng, 4)] == [4, 4, 2]


def test_demixing_recovers_each_image_through_a_linear_cloud_part() -> None:
    features = torch.randn(10, 6, 3, 3, generator=torch.Generator().manual_seed(1))
    keys = fresh_keys(len(features), np.random.default_rng(1))
    mixed = mix(features, keys)
    # what the cloud sees is no image's own features, yet demixing gives each one back
    assert all(not torch.allclose(mixed[i], features[j], atol=1e-3) for i in range(10) for j in range(10))
    assert torch.allclose(demix(mixed, keys), features, atol=1e-5)
    linear = torch.nn.Conv2d(6, 5, 3, padding=1)
    with torch.no_grad():
        assert torch.allclose(demix(linear(mixed) - linear.bias.view(1, -1, 1, 1), keys),
                              linear(features) - linear.bias.view(1, -1, 1, 1), atol=1e-4)


def test_split_classifier_trains_encryption_aware(tiny_cifar: Path, tmp_path: Path) -> None:
    config = ClassifierConfig(model="facemix_fastnet", epochs=1, batch_size=30, limit=120)
    metrics = train_classifier(config, tiny_cifar, tmp_path, False)
    assert 0 <= metrics["validation_accuracy"] <= 100
    model = load_classifier(tmp_path / "facemix_fastnet.pt")
    assert isinstance(model, FaceMixFastNet)
    with torch.inference_mode():
        images = torch.randn(7, 3, 32, 32)  # a batch that is not a whole number of groups
        assert model(images).shape == (7, 10) and model.edge_features(images).shape == (7, 64, 16, 16)


def test_facemix_is_measured_beside_the_same_network_trained_without_mixing_and_says_how_their_recipes_differ(
        tiny_cifar: Path, tmp_path: Path) -> None:
    train_classifier(ClassifierConfig(model="facemix_fastnet", epochs=1, batch_size=30, limit=120), tiny_cifar,
                     tmp_path / "mixing", False)
    train_classifier(ClassifierConfig(model="fastnet", epochs=2, batch_size=30, limit=120), tiny_cifar, tmp_path / "plain",
                     False)
    evaluation = load_evaluation(tiny_cifar)
    facemix = training_recipe(tmp_path / "mixing" / "facemix_fastnet.pt")
    reference = reference_accuracy(tmp_path / "plain" / "fastnet.pt", facemix, evaluation.images, evaluation.labels)
    assert (reference["checkpoint"], reference["model"], reference["epochs"]) == ("fastnet.pt", "fastnet", 2)
    assert reference["recipe_differences"] == {"epochs": [1, 2]}


def test_the_attack_on_mixtures_is_beside_the_class_mean_of_the_label_facemix_returns(tiny_cifar: Path) -> None:
    """Whatever FaceMix returns (here one label for every image), the baseline is that label's class mean."""
    link = FaceMixLink(ModelBundle.open(DEFAULT_PAIR.onnx_models), seed=0)
    evaluation, public = load_evaluation(tiny_cifar).subset(slice(0, 24)), load_split(tiny_cifar, "train").subset(slice(0, 64))
    view, dominant, _, _ = cloud_view(link, through_phone_jpeg(evaluation.images, 90))
    class_means = class_mean_images(*as_tensors(public))
    returned = np.full(len(evaluation), 3)
    result = attack(link, evaluation, returned, view, dominant, public, class_means,
                    InverseAttackConfig(epochs=1, batch_size=64), 90)
    images, labels = as_tensors(evaluation)
    originals, labels, judges = to_unit(images)[dominant], labels[dominant], load_judges()
    expected = label_only_baseline(class_means, torch.full_like(labels, 3), originals, labels, judges)[1]
    oracle = label_only_baseline(class_means, labels, originals, labels, judges)[1]
    assert expected["psnr_db"] != pytest.approx(oracle["psnr_db"])  # the check below tells the two apart
    assert result["label_only"]["judges"] == pytest.approx(expected["judges"])
    assert (result["label_only"]["psnr_db"], result["label_only"]["ssim"]) == pytest.approx(
        (expected["psnr_db"], expected["ssim"]))

"""FaceMix's keyed mixing: exact for linear cloud parts, and the split classifier trains with the usual recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pmc2.export.classifiers import load_classifier
from pmc2.export.facemix import FaceMixFastNet, demix, fresh_keys, mix
from pmc2.runtime.facemix import group_keys, random_orthogonal
from pmc2.export.train_classifier import ClassifierConfig
from pmc2.export.train_classifier import train as train_classifier


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

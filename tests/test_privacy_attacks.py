"""Every privacy attack end to end on tiny data, and the attack building blocks on cases with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pmc2.evaluation.image_similarity import psnr, structural_similarity
from pmc2.evaluation.inverse_attack import InverseAttackConfig
from pmc2.evaluation.judges import bits_beyond_label
from pmc2.evaluation.linkability import rank1_reidentification, same_class_partners, two_choice_success
from pmc2.evaluation.markdown import render_privacy
from pmc2.evaluation.privacy import PrivacyConfig, measure_privacy, write_grids
from pmc2.export.evaluate import TrainedPipeline
from pmc2.export.pairs import PAIRS
from pmc2.export.train_classifier import ClassifierConfig
from pmc2.export.train_classifier import train as train_classifier


@pytest.fixture(scope="module")
def tiny_judges(tiny_cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("judges")
    for model in ("fastnet", "compact_resnet"):
        train_classifier(ClassifierConfig(model=model, epochs=1, batch_size=32, limit=64, cutout=8), tiny_cifar, out, False)
    return out


def test_every_attack_runs_end_to_end_and_is_reported(tiny_cifar: Path, tiny_judges: Path, tmp_path: Path) -> None:
    config = PrivacyConfig(attacker_images=300, inverse=InverseAttackConfig(epochs=1, batch_size=64),
                           cache=tmp_path / "cache", judges=tiny_judges)
    privacy = measure_privacy(tiny_cifar, 60, config)
    variants = {variant.name: variant for pair in PAIRS.values() for variant in pair.with_every_protector()}
    assert [(pair["pair"], pair["protector"]) for pair in privacy["pairs"]] == [
        (name, variant.protector) for name, variant in variants.items()]
    assert "fastnet+dapter" in variants  # the other protectors face the same attacks
    for pair in privacy["pairs"]:
        assert set(pair["label_only"]["judges"]) == {"fastnet", "compact_resnet"}
        assert "bits beyond the cloud's label" in render_privacy({**privacy, "pairs": [pair]})
        for result in pair["views"].values():
            assert 0 < result["inverse_attack"]["psnr_db"] < 100 and -1 <= result["inverse_attack"]["ssim"] <= 1
            assert set(result["two_choice"]) == {"inverse", "view"} and set(result["goals_met"]) >= {"attack_ssim", "aux", "judges_beyond_label"}
            # the view attacker recomputes the candidates' views with the known, deterministic models
            assert result["two_choice"]["view"] >= 50.0
        if TrainedPipeline.load(variants[pair["pair"]]).generator.link_image == "decoded":  # every link carries x̂: attacked once
            assert pair["views"]["neural"]["same_as"] == "perturbed"
    write_grids(privacy, tmp_path)
    assert all((tmp_path / f"privacy_attack_grid_{name}.png").stat().st_size > 0 for name in variants)
    text = render_privacy(privacy)
    assert "label-only baseline" in text and "two-choice" in text
    json.dumps(privacy)  # everything left is plain data
    # a second run reuses the cached inverse networks (same models, data and config)
    record = privacy["pairs"][0]["views"]["neural"]["inverse_attack_record"]
    again = measure_privacy(tiny_cifar, 60, config)["pairs"][0]["views"]["neural"]["inverse_attack_record"]
    assert again["train_mse_per_epoch"] == record["train_mse_per_epoch"]


def test_similarity_scores_on_known_cases() -> None:
    image = torch.rand(4, 3, 32, 32)
    assert torch.all(psnr(image, image) >= 99) and torch.allclose(structural_similarity(image, image), torch.ones(4))
    noisy = (image + 0.1).clamp(0, 1)
    assert torch.all(psnr(image, noisy) < 25)


def test_linkability_is_chance_for_identical_views_and_certain_for_distinct_ones() -> None:
    originals = torch.rand(100, 3, 8, 8)
    labels = torch.arange(100) % 10
    partners = same_class_partners(labels, torch.Generator().manual_seed(0))
    assert torch.all(labels[partners] == labels) and torch.all(partners != torch.arange(100))
    same = torch.zeros(100, 3, 8, 8)  # a view that is the same for every image: no leakage
    assert two_choice_success(same, same, same[partners]) == 50.0
    assert two_choice_success(originals, originals, originals[partners]) == 100.0
    distractors, distractor_labels = torch.rand(500, 3, 8, 8), torch.arange(500) % 10
    assert rank1_reidentification(originals, originals, labels, distractors, distractor_labels) == 100.0
    assert rank1_reidentification(same, same, labels, torch.zeros(500, 3, 8, 8), distractor_labels) == 0.0
    codes = torch.rand(10, 3, 8, 8)  # one view per class (a latent codebook): every distractor ties exactly
    assert rank1_reidentification(codes[labels], codes[labels], labels, codes[distractor_labels], distractor_labels) == 0.0


def test_bits_beyond_the_label_are_zero_for_a_function_of_it_and_full_for_the_truth() -> None:
    generator = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 10, (2000,), generator=generator)
    cloud = torch.where(torch.rand(2000, generator=generator) < 0.2, torch.randint(0, 10, (2000,), generator=generator), truth)
    relabelled = (cloud * 7 + 3) % 10  # a judge that reads only the cloud's label (under other names)
    label_only = bits_beyond_label(relabelled, truth, cloud)
    assert label_only["bits"] == 0.0 and label_only["label_uncertainty_bits"] > 0.3
    oracle = bits_beyond_label(truth.clone(), truth, cloud)
    assert oracle["bits"] == pytest.approx(oracle["label_uncertainty_bits"]) and oracle["bits"] > 5 * oracle["chance_bits_p95"]

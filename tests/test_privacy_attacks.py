"""Every privacy attack end to end on tiny data, and the attack building blocks on cases with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pmc2.evaluation import inverse_attack
from pmc2.evaluation.image_similarity import psnr, structural_similarity
from pmc2.evaluation.inverse_attack import InverseAttackConfig
from pmc2.evaluation.judges import bits_beyond_label, load_judges, predictions
from pmc2.evaluation.label_only import label_only_baseline
from pmc2.evaluation.linkability import rank1_reidentification, same_class_partners, two_choice_success
from pmc2.evaluation.markdown import privacy_view, render_privacy, render_protectors
from pmc2.evaluation.measurements import CodecResult
from pmc2.evaluation.privacy import PrivacyConfig, measure_privacy, write_grids
from pmc2.evaluation.privacy_views import cloud_views
from pmc2.training.data import as_tensors, class_mean_images, to_unit
from pmc2.training.evaluate import TrainedPipeline
from pmc2.training.pairs import every_variant
from pmc2.training.train_classifier import ClassifierConfig
from pmc2.training.train_classifier import train as train_classifier
from pmc2.runtime.cifar10 import load_evaluation, load_split
from pmc2.runtime.link_codecs import LINK_CODECS

EVALUATION_IMAGES = 60
VARIANTS = {variant.name: variant for variant in every_variant()}


@pytest.fixture(scope="module")
def tiny_judges(tiny_cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("judges")
    for model in ("fastnet", "compact_resnet"):
        train_classifier(ClassifierConfig(model=model, epochs=1, batch_size=32, limit=64, cutout=8), tiny_cifar, out, False)
    return out


@pytest.fixture(scope="module")
def attack_run(tiny_cifar: Path, tiny_judges: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, PrivacyConfig, int]:
    """The privacy section on tiny data (300 attacker images, one epoch), its config, and how many inverse
    networks it trained (counted by a spy on the training function)."""
    config = PrivacyConfig(attacker_images=300, inverse=InverseAttackConfig(epochs=1, batch_size=64),
                           cache=tmp_path_factory.mktemp("attack_cache"), judges=tiny_judges)
    train_inverse, trainings = inverse_attack.train_inverse, []

    def counted(*args, **kwargs):
        trainings.append(args)
        return train_inverse(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inverse_attack, "train_inverse", counted)
        privacy = measure_privacy(tiny_cifar, EVALUATION_IMAGES, config)
    return privacy, config, len(trainings)


def attacked_views(privacy: dict) -> list[dict]:
    """The result of every view attacked on its own (not the same images as another view)."""
    return [result for pair in privacy["pairs"] for result in pair["views"].values() if "same_as" not in result]


def test_every_attack_runs_end_to_end_and_is_reported(attack_run: tuple[dict, PrivacyConfig, int], tmp_path: Path) -> None:
    privacy = attack_run[0]
    assert [(pair["pair"], pair["protector"]) for pair in privacy["pairs"]] == [
        (name, variant.protector) for name, variant in VARIANTS.items()]
    assert "fastnet+dapter" in VARIANTS  # the other protectors face the same attacks
    for pair in privacy["pairs"]:
        assert set(pair["label_only_true_label"]["judges"]) == {"fastnet", "compact_resnet"}
        for view, result in pair["views"].items():
            assert set(result["label_only"]["judges"]) == {"fastnet", "compact_resnet"}
            assert 0 < result["inverse_attack"]["psnr_db"] < 100 and -1 <= result["inverse_attack"]["ssim"] <= 1
            assert set(result["two_choice"]) == {"inverse", "view"} and set(result["goals_met"]) >= {"attack_ssim", "aux", "judges_beyond_label"}
        if TrainedPipeline.load(VARIANTS[pair["pair"]]).generator.link_image == "decoded":  # every link carries x̂: attacked once
            assert pair["views"]["neural"]["same_as"] == "perturbed"
    write_grids(privacy, tmp_path)
    assert all((tmp_path / f"privacy_attack_grid_{name}.png").stat().st_size > 0 for name in VARIANTS)
    json.dumps(privacy)  # everything left is plain data


def test_a_second_run_loads_the_cached_inverse_networks(attack_run: tuple[dict, PrivacyConfig, int], tiny_cifar: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    privacy, config, trained = attack_run
    assert trained == len(attacked_views(privacy))  # the spy saw the first run train each network once

    def refuse(*args, **kwargs):
        raise AssertionError(f"retrained {args[-1]!r} although the cache holds it")

    monkeypatch.setattr(inverse_attack, "train_inverse", refuse)
    again = measure_privacy(tiny_cifar, 10, config)  # the cache key names models, public images and config only
    assert [result["inverse_attack_record"] for result in attacked_views(again)] == [
        result["inverse_attack_record"] for result in attacked_views(privacy)]


@pytest.fixture(scope="module")
def received(tiny_cifar: Path) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Per pair and view, what the cloud receives for the evaluation images of ``attack_run`` and the labels it
    returns for them."""
    evaluation = load_evaluation(tiny_cifar).subset(slice(0, EVALUATION_IMAGES))
    seen = {}
    for name, variant in VARIANTS.items():
        pipeline = TrainedPipeline.load(variant)
        views = cloud_views(pipeline, evaluation.images, PrivacyConfig.phone_quality)
        seen[name] = {view: (images, predictions(pipeline.target, images)) for view, images in views.items()}
    return seen


def test_view_linkability_is_certain_when_the_view_carries_the_image_and_chance_for_class_codes(
        attack_run: tuple[dict, PrivacyConfig, int], received: dict) -> None:
    """The view attacker recomputes both candidates' views with the known models and wins unless they are the
    same: an image whose cloud label holds no other view always ties (50 %), one with an identical copy there
    may tie, any other always wins. DAPter's x' carries the image (near 100 %); every other view is one
    class-code image per cloud label (the codebook's decode x̂, which PMC²'s links carry too): chance."""
    for pair in attack_run[0]["pairs"]:
        for view, result in pair["views"].items():
            images, cloud_labels = received[pair["pair"]][view]
            flat = images.flatten(1)
            same_label = cloud_labels[:, None] == cloud_labels[None, :]
            same_view = (flat[:, None] == flat[None, :]).all(-1)
            distinguishable, copies = (same_label & ~same_view).sum(1), (same_label & same_view).sum(1) - 1
            always_tie, may_tie = distinguishable == 0, (distinguishable == 0) | (copies > 0)
            lowest, highest = (100.0 - 50.0 * float(ties.float().mean()) for ties in (may_tie, always_tie))
            assert lowest - 1e-4 <= result["two_choice"]["view"] <= highest + 1e-4, (pair["pair"], view)
            if pair["protector"] == "dapter" and view == "perturbed":
                assert lowest >= 90.0, pair["pair"]
            else:
                assert highest == 50.0, (pair["pair"], view)


def test_label_only_baseline_is_the_class_mean_of_the_label_the_cloud_returns(
        attack_run: tuple[dict, PrivacyConfig, int], received: dict, tiny_cifar: Path, tiny_judges: Path) -> None:
    evaluation = load_evaluation(tiny_cifar).subset(slice(0, EVALUATION_IMAGES))
    images, labels = as_tensors(evaluation)
    class_means, judges = class_mean_images(*as_tensors(load_split(tiny_cifar, "train"))), load_judges(tiny_judges)

    def baseline(learned: torch.Tensor) -> dict:
        scores = label_only_baseline(class_means, learned, to_unit(images), labels, judges)[1]
        return {"psnr_db": pytest.approx(scores["psnr_db"]), "ssim": pytest.approx(scores["ssim"]),
                "judges": pytest.approx(scores["judges"])}

    misread = 0
    for pair in attack_run[0]["pairs"]:
        assert pair["label_only_true_label"] == baseline(labels)  # the oracle, kept for reference
        for view, result in pair["views"].items():
            cloud_labels = received[pair["pair"]][view][1]
            misread += int((cloud_labels != labels).sum())
            assert result["label_only"] == baseline(cloud_labels), (pair["pair"], view)
    assert misread > 0  # the cloud's labels are not all true, so the oracle would have failed the check above


def subsections(markdown: str, kind: str) -> dict[str, list[list[str]]]:
    """The table rows (cells stripped) under each "### {kind} `name`" heading, by name."""
    parts = markdown.split(f"### {kind} `")[1:]
    return {part.split("`", 1)[0]: [[cell.strip() for cell in line.strip("|").split("|")]
                                    for line in part.splitlines() if line.startswith("| ")] for part in parts}


def test_privacy_section_shows_each_view_beside_its_own_baseline(attack_run: tuple[dict, PrivacyConfig, int]) -> None:
    privacy = attack_run[0]
    text = render_privacy(privacy)
    assert text.startswith("## Privacy under attack\n") and "learns the label the cloud returns" in text
    tables = subsections(text, "Pair")
    assert list(tables) == list(VARIANTS)
    for pair in privacy["pairs"]:
        rows = tables[pair["pair"]]

        def row(name: str) -> list[str]:
            [found] = [cells for cells in rows if cells[0] == name]
            return found

        def assert_scores(name: str, measured: dict) -> None:
            assert row(name)[1:3] == [f"{measured['psnr_db']:.2f}", f"{measured['ssim']:.3f}"], (pair["pair"], name)

        assert_scores("true label's class mean (oracle, not a goal)", pair["label_only_true_label"])
        for view, result in pair["views"].items():
            shown = f"{view} (the same images as {result['same_as']})" if "same_as" in result else view
            assert_scores(f"{shown}: label-only baseline (the cloud's label)", result["label_only"])
            assert_scores(f"{shown}: inverse attack", result["inverse_attack"])
            assert row(f"{shown}: inverse attack")[-1] == " ".join(
                f"{goal} {'✓' if met else '✗'}" for goal, met in result["goals_met"].items())
            if "same_as" not in result:
                for reading, bits in result["judge_bits_beyond_cloud_label"].items():
                    assert [view, reading, f"{bits['bits']:.3f}", f"{bits['chance_bits_p95']:.3f}",
                            f"{bits['label_uncertainty_bits']:.3f}"] in rows


def test_protector_tables_put_each_links_own_baseline_beside_its_attack(attack_run: tuple[dict, PrivacyConfig, int]) -> None:
    privacy = attack_run[0]

    def codec(name: str, **settings) -> CodecResult:
        return CodecResult(name, 90.0, 100.0, 1.0, batched_bytes={256: 1.0}, codebook_bytes={256: 0.5}, settings=settings)

    targets = [{"pair": name, "target": variant.target.stem, "aux": variant.aux.stem, "protector": variant.protector,
                "png": codec("png"), "webp": codec("webp"), "jpeg_auto": codec("jpeg", jpeg_quality=80),
                "neural": [codec("shipped")]} for name, variant in VARIANTS.items()]
    tables = subsections(render_protectors({"targets": targets, "privacy_attacks": privacy}), "Target")
    for pair in privacy["pairs"]:
        rows = tables[VARIANTS[pair["pair"]].target.stem]
        for link, codec in LINK_CODECS.items():
            view = privacy_view(codec)
            attack, baseline = pair["views"][view]["inverse_attack"], pair["views"][view]["label_only"]
            [row] = [cells for cells in rows if cells[0] == pair["protector"] and cells[1].startswith(f"{link} (")]
            assert row[5] == (f"{attack['ssim']:.3f} / {attack['psnr_db']:.2f} "
                              f"({baseline['ssim']:.3f} / {baseline['psnr_db']:.2f})"), (pair["pair"], link)
            assert row[6].endswith(f" ({max(baseline['judges'].values()):.1f}%)"), (pair["pair"], link)


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

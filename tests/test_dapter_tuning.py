"""DAPter's λ tuning strategy: its decisions, the paper's image entropy, and a two-round run on tiny data."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pmc2.training import dapter_tuning
from pmc2.training.classifiers import load_classifier
from pmc2.training.data import as_received_tensors, seeded_training_data
from pmc2.training.dapter_tuning import TUNING_FILE, Strategy, image_entropy_bits, measure, next_lambda, shipped_round, tune
from pmc2.training.perturbation_loss import PerturbationLossConfig
from pmc2.training.records import sha256_file
from pmc2.training.train_generator import GeneratorConfig

LIMIT = 64


def test_the_strategy_lowers_lambda_for_accuracy_raises_it_for_entropy_and_never_goes_back() -> None:
    strategy = Strategy()
    assert next_lambda(0.9, 5.0, 1.0, [0.9], strategy)[0] == pytest.approx(0.88)
    assert next_lambda(0.9, 2.0, 4.0, [0.9], strategy)[0] == pytest.approx(0.92)
    assert next_lambda(0.9, 2.0, 1.0, [0.9], strategy) == (None, "both criteria hold")
    following, why = next_lambda(0.88, 2.0, 4.0, [0.9, 0.88], strategy)  # back up to 0.9, tried already
    assert following is None and "tried before" in why
    assert next_lambda(0.02, 5.0, 1.0, [0.02], strategy)[0] is None  # λ must stay inside (0, 1)
    spent = [0.9 - 0.02 * k for k in range(strategy.rounds)]
    assert "budget (8) is spent" in next_lambda(spent[-1], 5.0, 1.0, spent, strategy)[1]


def test_the_last_round_within_the_accuracy_criterion_is_shipped_else_the_most_accurate() -> None:
    def rounds(*drops: float) -> list[dict]:
        return [{"round": k, "accuracy_drop": drop} for k, drop in enumerate(drops)]

    assert shipped_round(rounds(5.0, 2.5), Strategy()) == 1  # lowered λ until the accuracy held
    assert shipped_round(rounds(2.0, 4.0), Strategy()) == 0  # raised λ for the entropy, and lost the accuracy
    assert shipped_round(rounds(6.0, 5.0, 4.0), Strategy()) == 2  # never within: the most accurate
    assert shipped_round(rounds(6.0, 4.0, 5.0), Strategy()) == 1
    assert shipped_round(rounds(6.0, 4.0, 4.0), Strategy()) == 2  # the later on a tie


def test_image_entropy_is_the_papers_sum_over_channels_of_histogram_entropy() -> None:
    flat = torch.full((1, 3, 4, 4), 128, dtype=torch.uint8)
    halves = flat.clone()
    halves[:, :, :2] = 0  # two values, half the pixels each, in every channel: 1 bit per channel
    ramp = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)  # every value once: 8 bits
    assert image_entropy_bits(torch.cat([flat, halves])).tolist() == pytest.approx([0.0, 3.0])
    assert image_entropy_bits(ramp).item() == pytest.approx(24.0)


def test_rounds_fine_tune_from_the_last_one_ship_it_and_resume_without_training(
        classifiers: Path, tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target, aux = classifiers / "fastnet.pt", classifiers / "compact_resnet.pt"
    config = GeneratorConfig(architecture="dapter", base_width=8, epochs=1, batch_size=32, limit=LIMIT, phone_jpeg=90,
                             loss=PerturbationLossConfig(objective="dapter"))
    strategy = Strategy(max_accuracy_drop=-101.0, rounds=2)  # no drop is that small: λ goes down until rounds run out
    work, out = tmp_path / "work", tmp_path / "out"
    record = tune(config, config, strategy, tiny_cifar, target, aux, work, out, resume=False)

    assert [(r["round"], r["lambda"]) for r in record["rounds"]] == [(0, 0.9), (1, pytest.approx(0.88))]
    assert record["rounds"][0]["next_lambda"] == pytest.approx(0.88) and record["rounds"][1]["next_lambda"] is None
    assert "budget (2) is spent" in record["rounds"][1]["decision"] and record["ended"] == record["rounds"][1]["decision"]
    shipped = record["shipped_round"]  # none within the criterion: the most accurate, the later on a tie
    assert shipped == (0 if record["rounds"][0]["accuracy_drop"] < record["rounds"][1]["accuracy_drop"] else 1)
    assert 15 < record["received"]["image_entropy_bits"] < 24  # natural images: far above the criterion's 3 bits
    second = json.loads((work / "round1" / "generator.record.json").read_text())
    assert second["config"]["loss"]["dapter_lambda"] == pytest.approx(0.88)
    assert second["config"]["init"]["sha256"] == sha256_file(work / "round0" / "generator.pt")  # fine-tuned from 0
    assert sha256_file(out / "generator.pt") == sha256_file(work / f"round{shipped}" / "generator.pt")
    assert json.loads((out / "generator.record.json").read_text()) == json.loads(
        (work / f"round{shipped}" / "generator.record.json").read_text())

    _, validation = seeded_training_data(tiny_cifar, config.seed, LIMIT)  # the numbers are the shipped converter's
    images, labels = as_received_tensors(validation, 90)
    classifier = load_classifier(target)
    again = measure(out / "generator.pt", classifier, images, labels, record["rounds"][shipped]["clean_accuracy"])
    assert again == {key: record["rounds"][shipped][key] for key in again}

    with pytest.raises(SystemExit, match="--resume"):
        tune(config, config, strategy, tiny_cifar, target, aux, work, out, resume=False)
    with pytest.raises(SystemExit, match="other settings"):
        tune(config, config, replace(strategy, step=0.04), tiny_cifar, target, aux, work, out, resume=True)

    # stopped after round 0 was measured (round 1 not begun): the resumed tuning trains round 1 from round 0 again
    tuning = json.loads((work / TUNING_FILE).read_text())
    (work / TUNING_FILE).write_text(json.dumps({**tuning, "rounds": tuning["rounds"][:1]}))
    shutil.rmtree(work / "round1")
    cut = tune(config, config, replace(strategy, rounds=1), tiny_cifar, target, aux, work, tmp_path / "cut", resume=True)
    assert cut["shipped_round"] == 0 and not (work / "round1").exists()  # the budget cut ends the walk
    assert cut["rounds"] == [{**record["rounds"][0], "next_lambda": None, "decision": cut["ended"]}]  # decided anew
    assert cut["ended"].endswith("but the rounds' budget (1) is spent")
    assert tune(config, config, strategy, tiny_cifar, target, aux, work, out, resume=True) == record

    def refuse(*args, **kwargs):
        raise AssertionError("a finished round was trained again")

    monkeypatch.setattr(dapter_tuning, "train", refuse)
    assert tune(config, config, strategy, tiny_cifar, target, aux, work, out, resume=True) == record
    (work / TUNING_FILE).unlink()  # rounds whose settings nothing names are not taken
    with pytest.raises(SystemExit, match="no dapter_tuning.json"):
        tune(config, config, strategy, tiny_cifar, target, aux, work, out, resume=True)


def test_a_first_round_may_start_from_a_converter_tuned_for_another_target(
        classifiers: Path, tiny_cifar: Path, tmp_path: Path) -> None:
    target, aux = classifiers / "compact_resnet.pt", classifiers / "fastnet.pt"
    config = GeneratorConfig(architecture="dapter", base_width=8, epochs=1, batch_size=32, limit=LIMIT, phone_jpeg=90,
                             loss=PerturbationLossConfig(objective="dapter"))
    strategy = Strategy(max_accuracy_drop=101.0, max_entropy_bits=25.0, rounds=1)  # both hold: one round
    tune(config, config, strategy, tiny_cifar, aux, target, tmp_path / "other", tmp_path / "tuned", resume=False)
    tuned = tmp_path / "tuned" / "generator.pt"

    record = tune(config, config, strategy, tiny_cifar, target, aux, tmp_path / "work", tmp_path / "out",
                  resume=False, init=tuned)
    assert record["settings"]["first_round_init_sha256"] == sha256_file(tuned)
    first = json.loads((tmp_path / "work" / "round0" / "generator.record.json").read_text())
    assert first["config"]["init"]["sha256"] == sha256_file(tuned)
    with pytest.raises(SystemExit, match="other settings"):  # resumed as if from scratch: refused
        tune(config, config, strategy, tiny_cifar, target, aux, tmp_path / "work", tmp_path / "out", resume=True)
    narrower = replace(config, base_width=4)  # a converter of another width: refused before anything is written
    with pytest.raises(SystemExit, match="pass --base-width 8"):
        tune(narrower, narrower, strategy, tiny_cifar, target, aux, tmp_path / "w4", tmp_path / "o4", resume=False,
             init=tuned)
    assert not (tmp_path / "w4").exists()

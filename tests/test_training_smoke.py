"""A few training steps of each trainer on tiny real data, and resuming."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from pmc2.training import loop
from pmc2.training.classifiers import build_classifier, load_classifier
from pmc2.training.compressor import entropy_tables, load_compressor
from pmc2.training.generator import DapterConverter, FeatureUNet, build_generator, load_generator
from pmc2.training.train_end_to_end import EndToEndConfig
from pmc2.training.train_end_to_end import train as train_end_to_end
from pmc2.training.perturbation_loss import PerturbationLossConfig
from pmc2.training.pairs import DEFAULT_PAIR
from pmc2.training.records import load_initial_weights, save_state
from pmc2.training.train_classifier import ClassifierConfig
from pmc2.training.train_classifier import train as train_classifier
from pmc2.training.compressor import ARCHITECTURES, build_compressor
from pmc2.training.compressor_rescaling import channel_statistics, matching_affine
from pmc2.training.train_compressor import (CompressorConfig, disagreement_with_uncoded, forward_with_rounded_latent,
                                            target_log_probabilities)
from pmc2.training import train_compressor as compressor_trainer
from pmc2.training.data import as_received_tensors, normalize, seeded_training_data, to_unit
from pmc2.training.train_compressor import train as train_compressor
from pmc2.training.train_compressor import train_on
from pmc2.training.train_generator import GeneratorConfig, PerturbationStep
from pmc2.training.train_generator import train as train_generator

LIMIT = 64


def _epochs(metrics_file: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in metrics_file.read_text().splitlines()]


def test_classifier_training_writes_checkpoint_record_and_metrics(classifiers: Path) -> None:
    record = json.loads((classifiers / "fastnet.record.json").read_text())
    assert record["checkpoint"] == "fastnet.pt"
    assert len(record["data_sha256"]) == 64 and record["git_commit"]
    assert record["config"]["limit"] == LIMIT
    assert _epochs(classifiers / "fastnet.metrics.jsonl") == [1]
    state = torch.load(classifiers / "fastnet.pt", weights_only=False)
    assert state["name"] == "fastnet"


def test_a_fresh_run_drops_the_metrics_an_earlier_run_left_in_its_folder(tiny_cifar: Path, tmp_path: Path) -> None:
    config = ClassifierConfig(model="fastnet", epochs=1, batch_size=32, limit=LIMIT)
    for _ in range(2):
        train_classifier(config, tiny_cifar, tmp_path, False)
    assert _epochs(tmp_path / "fastnet.metrics.jsonl") == [1]


def test_classifier_resume_continues_from_the_saved_epoch(tiny_cifar: Path, tmp_path: Path) -> None:
    config = ClassifierConfig(model="compact_resnet", epochs=1, batch_size=32, limit=LIMIT)
    train_classifier(config, tiny_cifar, tmp_path, False)
    first = torch.load(tmp_path / "compact_resnet.state.pt", weights_only=False)["model"]
    config.epochs = 2
    train_classifier(config, tiny_cifar, tmp_path, True)
    assert _epochs(tmp_path / "compact_resnet.metrics.jsonl") == [1, 2]
    second = torch.load(tmp_path / "compact_resnet.state.pt", weights_only=False)
    assert second["epoch"] == 2
    assert not torch.equal(first["head.weight"], second["model"]["head.weight"])


def _metrics_without_seconds(metrics_file: Path) -> list[dict]:
    return [{key: value for key, value in json.loads(line).items() if key != "seconds"}
            for line in metrics_file.read_text().splitlines()]


def _same_tensors(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


@pytest.mark.parametrize("stop", ["after an epoch", "inside an epoch"])
@pytest.mark.parametrize("trainer", ["classifier", "generator", "compressor", "end_to_end"])
def test_a_stopped_run_resumes_to_what_the_uninterrupted_run_gives(
        classifiers: Path, tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trainer: str,
        stop: str) -> None:
    frozen = (classifiers / "fastnet.pt", classifiers / "compact_resnet.pt")
    trainers = {  # a partial last batch (64 = 48 + 16); the classifier's cutout and the end-to-end objective's
        # erasing draw from the shuffling generator inside the steps
        "classifier": ("compact_resnet", "model", "compact_resnet.pt", lambda out, resume: train_classifier(
            ClassifierConfig(model="compact_resnet", epochs=2, batch_size=48, cutout=8, limit=LIMIT), tiny_cifar, out, resume)),
        "generator": ("generator", "generator", "generator.pt", lambda out, resume: train_generator(
            GeneratorConfig(base_width=8, epochs=2, batch_size=48, limit=LIMIT), tiny_cifar, *frozen, out, resume)),
        "compressor": ("compressor", "model", "compressor.pt", lambda out, resume: train_compressor(
            CompressorConfig(n=16, m=24, epochs=2, batch_size=48, limit=LIMIT), tiny_cifar, DEFAULT_PAIR.generator,
            frozen[0], out, resume)),
        "end_to_end": ("end_to_end", "generator", "generator.pt", lambda out, resume: train_end_to_end(
            EndToEndConfig(base_width=8, n=16, m=24, epochs=2, batch_size=48, limit=LIMIT, rate_warmup_epochs=1.0),
            tiny_cifar, *frozen, out, resume)),
    }
    name, weights, shipped_file, run = trainers[trainer]
    monkeypatch.setattr(loop, "STATE_EVERY_SECONDS", 0.0)  # a state after every batch but an epoch's last
    straight = run(tmp_path / "straight", False)
    written_inside = []

    def save_then_stop(*args, **kwargs) -> None:
        save_state(*args, **kwargs)
        inside = (args[5:] or [kwargs.get("within_epoch")])[0] is not None
        written_inside.append(inside)
        if inside == (stop == "inside an epoch"):
            raise KeyboardInterrupt  # as if killed once that state is written

    with monkeypatch.context() as patched:
        patched.setattr(loop, "save_state", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "resumed", False)
    assert written_inside == ([True] if stop == "inside an epoch" else [True, False])
    resumed = run(tmp_path / "resumed", True)

    assert _metrics_without_seconds(tmp_path / "resumed" / f"{name}.metrics.jsonl") == \
        _metrics_without_seconds(tmp_path / "straight" / f"{name}.metrics.jsonl")
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in straight.items() if k != "seconds"}
    states = [torch.load(tmp_path / out / f"{name}.state.pt", weights_only=False) for out in ("straight", "resumed")]
    assert _same_tensors(states[0][weights], states[1][weights])
    shipped = [torch.load(tmp_path / out / shipped_file, weights_only=False)["state_dict"] for out in ("straight", "resumed")]
    assert _same_tensors(*shipped)


def test_a_state_written_inside_an_epoch_resumes_only_with_the_batches_it_was_trained_with(
        tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(batch_size: int, resume: bool) -> dict:
        config = ClassifierConfig(model="compact_resnet", epochs=2, batch_size=batch_size, limit=LIMIT)
        return train_classifier(config, tiny_cifar, tmp_path, resume)

    def save_then_stop(*args, **kwargs) -> None:
        save_state(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "STATE_EVERY_SECONDS", 0.0)
    with monkeypatch.context() as patched:
        patched.setattr(loop, "save_state", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run(48, False)
    with pytest.raises(SystemExit, match="inside an epoch of 2 batches, not 4"):
        run(16, True)


def test_running_means_weigh_each_batch_as_told() -> None:
    means = loop.RunningMeans()
    means.add({"loss": 1.0}, weight=3)
    means.add({"loss": 3.0})
    assert means.means == {"loss": 1.5} and means.seen == 4


@pytest.mark.parametrize("aux_term", ["hinge", "neg-ce"])
def test_generator_training_and_resume(classifiers: Path, tiny_cifar: Path, tmp_path: Path, aux_term: str) -> None:
    config = GeneratorConfig(base_width=8, epochs=1, batch_size=32, limit=LIMIT,
                             loss=PerturbationLossConfig(aux_term=aux_term))
    args = (tiny_cifar, classifiers / "fastnet.pt", classifiers / "compact_resnet.pt", tmp_path)
    train_generator(config, *args, False)
    config.epochs = 2
    best = train_generator(config, *args, True)
    assert _epochs(tmp_path / "generator.metrics.jsonl") == [1, 2]
    history = [json.loads(line) for line in (tmp_path / "generator.metrics.jsonl").read_text().splitlines()]
    assert best["epoch"] == min(history, key=lambda metrics: metrics["validation_loss"])["epoch"]
    saved = torch.load(tmp_path / "generator.pt", weights_only=False)
    assert saved["base_width"] == 8 and saved["epoch"] == best["epoch"]


def test_dapter_converter_trains_with_its_own_loss(classifiers: Path, tiny_cifar: Path, tmp_path: Path) -> None:
    config = GeneratorConfig(architecture="dapter", base_width=8, epochs=1, batch_size=32, limit=LIMIT,
                             loss=PerturbationLossConfig(objective="dapter", dapter_lambda=0.9))
    best = train_generator(config, tiny_cifar, classifiers / "fastnet.pt", classifiers / "compact_resnet.pt",
                           tmp_path, False)
    converter = load_generator(tmp_path / "generator.pt")
    assert isinstance(converter, DapterConverter) and converter.link_image == "perturbed"
    # the loss trained on is DAPter's (linear in its terms, so their running means add up the same way)
    assert best["train_loss"] == pytest.approx(0.9 * best["train_grey_l1"] + 0.1 * best["train_target_ce"], rel=1e-4)
    assert converter(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    config.phone_jpeg = 90  # the same run on the images as the edge receives them
    after_jpeg = train_generator(config, tiny_cifar, classifiers / "fastnet.pt", classifiers / "compact_resnet.pt",
                                 tmp_path / "phone_jpeg", False)
    assert json.loads((tmp_path / "phone_jpeg" / "generator.record.json").read_text())["config"]["phone_jpeg"] == 90
    assert after_jpeg["validation_loss"] != best["validation_loss"]



class _CountingClassifier(torch.nn.Module):
    """A stand-in auxiliary classifier that counts the images it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.images_seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.images_seen += len(images)
        return images.mean(dim=(2, 3)).repeat(1, 4)[:, :10]


@pytest.mark.parametrize(("objective", "aux_in_training"), [("dapter", False), ("mmsys22", True)])
def test_a_training_step_runs_the_auxiliary_classifier_only_when_its_objective_uses_it(objective: str,
                                                                                      aux_in_training: bool) -> None:
    config = GeneratorConfig(architecture="dapter", base_width=4, loss=PerturbationLossConfig(objective=objective))
    aux, target = _CountingClassifier(), torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    step = PerturbationStep(build_generator("dapter", 4), target, aux, config)
    images, labels = torch.rand(6, 3, 32, 32), torch.arange(6)
    trained = step(images, labels, measure_all=False)
    assert ("aux_ce" in trained and "similarity" in trained) == aux_in_training
    assert aux.images_seen == (6 if aux_in_training else 0)
    measured = step(images, labels)  # as validation measures: every term, whatever the objective
    assert {"aux_ce", "similarity", "aux_correct", "abs_ssim_sum"} <= measured.keys()
    assert measured["loss"].item() == pytest.approx(trained["loss"].item(), rel=1e-6)

@pytest.mark.parametrize(("loss", "straight_through", "architecture"),
                         [("rd", False, "factorized"), ("task", False, "factorized"), ("task", True, "factorized"),
                          ("agreement", False, "residual")])
def test_compressor_training_on_perturbed_images(classifiers: Path, tiny_cifar: Path, tmp_path: Path, loss: str,
                                                 straight_through: bool, architecture: str) -> None:
    generator_config = GeneratorConfig(base_width=8, epochs=1, batch_size=32, limit=LIMIT)
    train_generator(generator_config, tiny_cifar, classifiers / "fastnet.pt", classifiers / "compact_resnet.pt",
                    tmp_path, False)
    config = CompressorConfig(n=32, m=48, architecture=architecture, loss=loss, straight_through=straight_through,
                              epochs=1, batch_size=16, limit=LIMIT)
    best = train_compressor(config, tiny_cifar, tmp_path / "generator.pt", classifiers / "fastnet.pt", tmp_path, False)
    assert (tmp_path / "compressor.pt").is_file() and (tmp_path / "compressor.record.json").is_file()
    assert type(load_compressor(tmp_path / "compressor.pt")) is ARCHITECTURES[architecture]
    assert best["validation_bpp"] > 0 and ("train_ce" in best) == (loss == "task")
    assert ("train_kl" in best) == (loss == "agreement")
    config.epochs = 2
    train_compressor(config, tiny_cifar, tmp_path / "generator.pt", classifiers / "fastnet.pt", tmp_path, True)
    assert _epochs(tmp_path / "compressor.metrics.jsonl") == [1, 2]


@pytest.mark.parametrize("schedule, last_lr", [("plateau", 1e-4), ("cosine", 0.0)])
def test_the_compressors_learning_rate_follows_its_schedule(classifiers: Path, tiny_cifar: Path, tmp_path: Path,
                                                            schedule: str, last_lr: float) -> None:
    config = CompressorConfig(n=16, m=24, schedule=schedule, epochs=1, batch_size=16, limit=LIMIT)
    train_compressor(config, tiny_cifar, None, classifiers / "fastnet.pt", tmp_path, False)
    state = torch.load(tmp_path / "compressor.state.pt", weights_only=False)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(last_lr, abs=1e-12)


def test_a_compressor_starts_on_the_images_themselves_then_trains_on_a_protectors_images_from_there(
        classifiers: Path, tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start, task, target = tmp_path / "start", tmp_path / "task", classifiers / "fastnet.pt"
    config = CompressorConfig(n=32, m=48, loss="rd", epochs=1, batch_size=16, limit=LIMIT, phone_jpeg=90)
    coded = []

    def recording_train_on(*args, **kwargs):  # keeps the training images it is given
        coded.append(args[1][0])
        return train_on(*args, **kwargs)

    monkeypatch.setattr(compressor_trainer, "train_on", recording_train_on)
    train_compressor(config, tiny_cifar, None, target, start, False)
    train_set, _ = seeded_training_data(tiny_cifar, config.seed, LIMIT)
    assert torch.equal(coded[0], to_unit(as_received_tensors(train_set, 90)[0]))  # the images as received
    assert json.loads((start / "compressor.record.json").read_text())["config"]["generator"] is None
    train_generator(GeneratorConfig(architecture="dapter", base_width=8, epochs=1, batch_size=32, limit=LIMIT,
                                    loss=PerturbationLossConfig(objective="dapter")),
                    tiny_cifar, target, classifiers / "compact_resnet.pt", tmp_path, False)
    config.loss, config.match_statistics = "task", True
    folded = []
    monkeypatch.setattr(compressor_trainer, "fold_into_compressor", lambda model, affine: folded.append(affine))
    best = train_compressor(config, tiny_cifar, tmp_path / "generator.pt", target, task, False,
                            init=start / "compressor.pt")
    record = json.loads((task / "compressor.record.json").read_text())["config"]
    assert record["generator"] == str(tmp_path / "generator.pt") and "train_ce" in best
    assert record["init"]["sha256"] == hashlib.sha256((start / "compressor.pt").read_bytes()).hexdigest()
    rescaling = matching_affine(coded[1], channel_statistics(coded[0])).as_record()  # protector's onto public
    assert record["match_statistics"] and len(folded) == 1 and folded[0].as_record() == record["init"]["rescaled_by"]
    assert record["init"]["rescaled_by"].keys() == rescaling.keys()
    assert all(record["init"]["rescaled_by"][key] == pytest.approx(value) for key, value in rescaling.items())


def test_init_starts_from_a_checkpoint_and_records_where_it_came_from(classifiers: Path, tiny_cifar: Path,
                                                                        tmp_path: Path) -> None:
    source = classifiers / "compact_resnet.pt"
    model = build_classifier("compact_resnet")
    origin = load_initial_weights(model, source)
    shipped = torch.load(source, weights_only=False)["state_dict"]
    assert all(torch.equal(value.float(), shipped[key].float()) for key, value in model.state_dict().items())
    assert origin["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert origin["record"]["checkpoint"] == "compact_resnet.pt"
    config = ClassifierConfig(model="compact_resnet", epochs=1, batch_size=32, limit=LIMIT)
    train_classifier(config, tiny_cifar, tmp_path, False, init=source)
    record = json.loads((tmp_path / "compact_resnet.record.json").read_text())
    assert record["config"]["init"]["sha256"] == origin["sha256"]


def test_straight_through_forward_decodes_what_coding_decodes_and_passes_gradients() -> None:
    torch.manual_seed(0)
    model = build_compressor(16, 24)
    images = torch.rand(4, 3, 32, 32)
    output = forward_with_rounded_latent(model.train(), images)
    output["x_hat"].sum().backward()
    assert model.g_a[0].weight.grad is not None and model.g_a[0].weight.grad.abs().sum() > 0
    with torch.no_grad():
        coded = model.eval()(images)["x_hat"]
    assert torch.allclose(output["x_hat"], coded, atol=1e-6)
    assert output["likelihoods"]["y"].shape == coded.new_empty(4, 24, 2, 2).shape


def test_the_agreement_term_vanishes_only_where_the_target_answers_as_on_the_uncoded_images() -> None:
    torch.manual_seed(0)
    target = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    images, labels = torch.rand(8, 3, 32, 32, requires_grad=True), torch.arange(8)
    uncoded = target_log_probabilities(target, images, labels)  # once per image set, before training
    assert disagreement_with_uncoded(target, images, uncoded).item() == pytest.approx(0, abs=1e-6)
    decoded = torch.rand(8, 3, 32, 32, requires_grad=True)
    disagreement = disagreement_with_uncoded(target, decoded, uncoded)
    disagreement.backward()
    assert disagreement.item() > 1e-3 and decoded.grad.abs().sum() > 0
    assert images.grad is None  # the uncoded images' answer is the reference, not trained toward the decoded
    reference = torch.nn.functional.softmax(target(normalize(images)), dim=1).detach()  # the uncoded: a constant
    answer = torch.nn.functional.log_softmax(target(normalize(decoded)), dim=1)
    assert disagreement.item() == pytest.approx((reference * (reference.log() - answer)).sum(1).mean().item(), rel=1e-5)


def test_end_to_end_training_resumes_and_ships_a_generator_and_a_compressor_with_tables(
        classifiers: Path, tiny_cifar: Path, tmp_path: Path) -> None:
    config = EndToEndConfig(base_width=8, n=16, m=24, epochs=1, batch_size=32, limit=LIMIT, rate_warmup_epochs=1.0)
    args = (tiny_cifar, classifiers / "fastnet.pt", classifiers / "compact_resnet.pt", tmp_path, False)
    train_end_to_end(config, *args, encoder_init=classifiers / "fastnet.pt")
    config.epochs = 2
    best = train_end_to_end(config, *args[:-1], True, encoder_init=classifiers / "fastnet.pt")
    assert _epochs(tmp_path / "end_to_end.metrics.jsonl") == [1, 2]
    assert best["validation_bytes_ideal"] > 0 and 0 <= best["validation_target_accuracy"] <= 100
    generator = load_generator(tmp_path / "generator.pt")
    assert isinstance(generator, FeatureUNet) and generator(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    compressor = load_compressor(tmp_path / "compressor.pt")  # refuses a checkpoint without tables
    assert entropy_tables(compressor).quantized_cdf.shape[0] == 24
    for name in ("generator", "compressor"):
        record = json.loads((tmp_path / f"{name}.record.json").read_text())
        assert record["checkpoint_sha256"] == hashlib.sha256((tmp_path / f"{name}.pt").read_bytes()).hexdigest()


def test_encoder_init_copies_the_trained_fastnet_features(classifiers: Path) -> None:
    fastnet = load_classifier(classifiers / "fastnet.pt")
    generator = FeatureUNet(8)
    generator.init_from_fastnet(fastnet)
    assert torch.equal(generator.groups[1][0].weight, fastnet.layers[1][0].weight)
    assert torch.equal(generator.stem.weight, fastnet.stem.weight)

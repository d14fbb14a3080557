"""The stages of a fitting run, in order, each resumable and each summarised in the run's record.

    answers ───────── the target's labels of the public images (black-box: every image a counted query)
    edge_classifier ─ FastNet trained from scratch on those answers: the generator's starting features
    compressor_start  the compressor trained for rate and distortion on the public images as the edge receives them
    end_to_end ────── generator + compressor trained against the target (white-box) or that classifier (black-box)
    codebook ──────── one latent per class; g_s shaped against the teacher, then code images the target
                      misreads steered by its labels alone (code_steering), in a copy of the compressor
    bundle ────────── ONNX export of generator, g_a, g_s and the entropy tables, checked against torch
    evaluation ────── Table 3's row, the target answering for every image the cloud would decode
    attacks ───────── the report's privacy attacks on what the cloud receives, beside the label-only baseline

Nothing a black-box run ships starts from the target's weights: the edge classifier is trained here, from a
random initialisation, on the target's answers; the compressor starts from a random initialisation, trained first
for rate and distortion alone (end to end from random weights, the rate term outgrew the task and the target read
chance).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pmc2.evaluation.inverse_attack import InverseAttackConfig
from pmc2.evaluation.judges import predictions
from pmc2.export.onnx_parity import check_parity
from pmc2.export.to_onnx import export_all
from pmc2.fit.access import WHITE_BOX, BlackBoxLabeler, QueryCount, TargetAccess
from pmc2.fit.code_steering import Steering, StartingPool, steer_codebook
from pmc2.fit.fitted_bundle import bundle_attacks, bundle_row
from pmc2.runtime.cifar10 import CLASSES as CIFAR10_CLASSES, LabelledImages, load_evaluation
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY
from pmc2.runtime.paths import CHECKPOINTS
from pmc2.training.classifiers import load_classifier
from pmc2.training.compressor import load_compressor
from pmc2.training.data import as_received_tensors, seeded_training_data, to_unit
from pmc2.training.generator import load_generator
from pmc2.training.latent_codebook import (CodeShaping, choose_codebook, decoded_entry_terms, shape_decoded_entries,
                                          store_codebook, unit_images)
from pmc2.training.pairs import ModelPair
from pmc2.training.records import record_path
from pmc2.training.train_classifier import ClassifierConfig, train_on as train_classifier_on
from pmc2.training.train_compressor import CompressorConfig, train_on as train_compressor_on
from pmc2.training.train_end_to_end import EndToEndConfig, train_on as train_end_to_end_on

EXPORTED = ("generator", "g_a", "g_s")  # the edge's models; the cloud adds its own target
ANSWER_CHUNK = 5_000  # images a black-box target answers between two saves of its answers
CLASSES = len(CIFAR10_CLASSES)
COMPRESSOR_START_EPOCHS = 4


@dataclass
class FitSettings:
    data: Path
    aux: Path = CHECKPOINTS / "compact_resnet.pt"  # a public classifier the decoded images must not inform
    edge_classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    compressor_start: CompressorConfig = field(default_factory=lambda: CompressorConfig(
        epochs=COMPRESSOR_START_EPOCHS, phone_jpeg=PHONE_JPEG_QUALITY))
    end_to_end: EndToEndConfig = field(default_factory=EndToEndConfig)
    limit: int | None = None  # public images (training and validation each); None: all
    codebook_images: int = 20_000
    shaping_rounds: int = 4  # g_s is shaped for another round while the teacher misreads a code image
    codebook: Steering = field(default_factory=Steering)  # then steered while the target itself misreads one
    evaluation_limit: int | None = None  # evaluation images; None: all 5,000
    attacker_images: int = 20_000
    attack_epochs: int = InverseAttackConfig.epochs
    phone_quality: int = PHONE_JPEG_QUALITY
    seed: int = 0


class FitRun:
    """One fitting run's folder, settings and access to its target; the stages read and write through it."""

    def __init__(self, out: Path, settings: FitSettings, access: TargetAccess) -> None:
        self.out, self.settings, self.access = out, settings, access
        if isinstance(access, BlackBoxLabeler) and self.answer_cache.exists():
            access.load_answers(self.answer_cache)

    @property
    def answer_cache(self) -> Path:
        """Every answer a black-box target gave this run, and its counts: a resumed run pays for nothing twice."""
        return self.out / "target_answers.npz"

    def keep_answers(self) -> None:
        if isinstance(self.access, BlackBoxLabeler):
            self.access.save_answers(self.answer_cache)

    def labels_kept(self, images_uint8: np.ndarray) -> np.ndarray:
        """The target's labels (uint8, checked to be classes), in chunks, the answers kept after each."""
        chunks = []
        for start in range(0, len(images_uint8), ANSWER_CHUNK):
            chunks.append(self.access.labels(images_uint8[start : start + ANSWER_CHUNK]))
            self.keep_answers()
        labels = np.concatenate(chunks)
        if not (0 <= labels.min() and labels.max() < CLASSES):
            raise RuntimeError(f"{self.access.description} answered labels outside 0…{CLASSES - 1}")
        return labels.astype(np.uint8)

    @cached_property
    def public(self) -> tuple[LabelledImages, LabelledImages]:
        """The public training images and validation images (their public labels)."""
        return seeded_training_data(self.settings.data, self.settings.seed, self.settings.limit)

    @cached_property
    def evaluation(self) -> LabelledImages:
        data = load_evaluation(self.settings.data)
        return data.subset(slice(0, self.settings.evaluation_limit)) if self.settings.evaluation_limit else data

    @property
    def answers_file(self) -> Path:
        return self.out / "answers.npz"

    @property
    def edge_classifier(self) -> Path:
        return self.out / "edge_classifier" / f"{self.settings.edge_classifier.model}.pt"

    @property
    def compressor_start(self) -> Path:
        return self.out / "compressor_start" / "compressor.pt"

    @property
    def generator(self) -> Path:
        return self.out / "end_to_end" / "generator.pt"

    @property
    def trained_compressor(self) -> Path:
        return self.out / "end_to_end" / "compressor.pt"

    @property
    def compressor(self) -> Path:
        """The trained compressor with its codebook (a copy: the end-to-end stage's output stays as it wrote it)."""
        return self.out / "codebook" / "compressor.pt"

    @property
    def bundle(self) -> Path:
        return self.out / "bundle"

    def teacher(self) -> tuple[nn.Module, str]:
        """What the end-to-end training and the code shaping differentiate through, and what it is."""
        if self.access.kind == WHITE_BOX:
            return self.access.trainable, self.access.description
        return (load_classifier(self.edge_classifier),
                f"the edge classifier {self.edge_classifier}, fitted to the answers of {self.access.description}")

    def pair(self) -> ModelPair:
        """The fitted models as a pair, for the export and its parity check (its target slot holds the edge
        classifier, which neither exports: the bundle carries the edge's models only)."""
        return ModelPair("fitted", self.edge_classifier, self.settings.aux, self.generator, self.compressor, self.bundle)


def answers(run: FitRun) -> dict:
    train_set, validation = run.public
    train, held_out = run.labels_kept(train_set.images), run.labels_kept(validation.images)
    np.savez_compressed(run.answers_file, train=train, validation=held_out)
    return {"images": len(train) + len(held_out),
            "agreement_with_public_labels": 100.0 * float(np.mean(np.concatenate([train == train_set.labels,
                                                                                   held_out == validation.labels])))}


def edge_classifier(run: FitRun) -> dict:
    train_set, validation = run.public
    stored = np.load(run.answers_file)
    config = run.settings.edge_classifier
    metrics = train_classifier_on(config, LabelledImages(train_set.images, stored["train"]),
                                  LabelledImages(validation.images, stored["validation"]), run.edge_classifier.parent,
                                  resume=True)
    return {"agreement_with_target_on_validation": metrics["validation_accuracy"], "epochs": metrics["epoch"]}


def compressor_start(run: FitRun) -> dict:
    config = run.settings.compressor_start
    train_set, validation = run.public
    teacher, described = run.teacher()
    train_images, train_labels = as_received_tensors(train_set, config.phone_jpeg)
    val_images, val_labels = as_received_tensors(validation, config.phone_jpeg)
    sources = {"images": "the public images as the edge receives them", "scored_by": described}
    metrics = train_compressor_on(config, (to_unit(train_images), train_labels), (to_unit(val_images), val_labels),
                                  train_set.sha256(), teacher, sources, run.compressor_start.parent, resume=True)
    return {"epoch_kept": metrics["epoch"], "validation_bpp": metrics["validation_bpp"],
            "validation_mse": metrics["validation_mse"],
            "validation_teacher_accuracy": metrics["validation_target_accuracy"]}


def end_to_end(run: FitRun) -> dict:
    train_set, validation = run.public
    teacher, described = run.teacher()
    metrics = train_end_to_end_on(run.settings.end_to_end, train_set, validation, teacher,
                                  load_classifier(run.settings.aux), {"target": described, "aux": str(run.settings.aux)},
                                  run.generator.parent, resume=True, encoder_init=run.edge_classifier,
                                  compressor_init=run.compressor_start)
    return {"teacher": described, "epoch_kept": metrics["epoch"],
            "validation_target_accuracy": metrics["validation_target_accuracy"],
            "validation_bytes_ideal": metrics["validation_bytes_ideal"]}


def codebook(run: FitRun) -> dict:
    train_set, _ = run.public
    images = train_set.subset(slice(0, run.settings.codebook_images))
    compressor = load_compressor(run.trained_compressor, with_codebook=False)
    chosen, found = choose_codebook(load_generator(run.generator), compressor, images)
    teacher, _ = run.teacher()
    aux, (unit, labels) = load_classifier(run.settings.aux), unit_images(images)
    shapings = []
    for shaping_round in range(1 + run.settings.shaping_rounds):
        shapings.append(shape_decoded_entries(compressor, teacher, aux, chosen["symbols"], unit, labels,
                                              CodeShaping(seed=shaping_round)))
        if all(shapings[-1]["target_reads"]["after"]):  # the teacher's reading
            break
    answered = torch.from_numpy(np.load(run.answers_file)["train"][: len(unit)]).long()
    pool = StartingPool.unread_by_aux(unit, answered, predictions(aux, unit))
    steering, reads = steer_codebook(run.access.labels, compressor, chosen["symbols"], pool, run.settings.codebook,
                                     after_round=run.keep_answers)
    run.compressor.parent.mkdir(parents=True, exist_ok=True)
    for source in (run.trained_compressor, record_path(run.trained_compressor)):
        shutil.copyfile(source, run.compressor.parent / source.name)
    store_codebook(run.compressor, compressor, chosen, {
        "images": len(images), "data_sha256": images.sha256(), **found, "shaping": shapings,
        "steering": steering, "steering_starts_per_class": torch.bincount(pool.classes, minlength=CLASSES).tolist(),
        "read_by_the_target_per_round": reads})
    with torch.no_grad():
        after = decoded_entry_terms(compressor, teacher, aux, chosen["symbols"], [unit[labels == k] for k in range(CLASSES)])
    return {"entries": len(reads[-1]), "read_by_the_target": sum(reads[-1]), "shaping_rounds": len(shapings),
            "steering_rounds": len(steering), "aux_reads": int(after["aux_reads"].sum()),
            "mean_abs_ssim_to_class": float(after["abs_ssim"].mean()),
            "held_out_rule_accuracy": max(found["held_out_accuracy_by_weight_decay"].values())}


def bundle(run: FitRun) -> dict:
    pair = run.pair()
    manifest = export_all(pair, run.bundle, EXPORTED)
    report = check_parity(pair, run.bundle, EXPORTED, run.evaluation)
    if not report.ok:
        raise RuntimeError(f"the exported bundle does not match torch:\n{report}")
    return {"models": sorted(manifest["models"]), "parity": str(report)}


def evaluation(run: FitRun) -> dict:
    return bundle_row(run.bundle, run.access, run.evaluation, run.settings.phone_quality)


def attacks(run: FitRun) -> dict:
    return bundle_attacks(run.bundle, run.access, run.evaluation, run.settings, run.out / "attacks")


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[FitRun], dict]


STAGES = tuple(Stage(function.__name__, function) for function in (
    answers, edge_classifier, compressor_start, end_to_end, codebook, bundle, evaluation, attacks))


def run_stage(run: FitRun, stage: Stage) -> dict:
    """``stage``'s summary, with the target queries it made. Each stage starts from the run's seed, so a resumed
    run trains what an uninterrupted one would."""
    torch.manual_seed(run.settings.seed)
    before = QueryCount(**asdict(getattr(run.access, "count", QueryCount())))
    try:
        summary = stage.run(run)
    finally:
        run.keep_answers()
    after = getattr(run.access, "count", QueryCount())
    spent = {key: getattr(after, key) - value for key, value in asdict(before).items()}
    return {**summary, "queries": spent}

"""The trained default models shipped in checkpoints/: records, size, and reproducible evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pmc2.training.classifier_accuracy import clean_accuracy, evaluation_record_path
from pmc2.training.classifiers import build_classifier, load_classifier
from pmc2.training.compressor import CODEBOOK_KEY, load_compressor
from pmc2.training.data import as_tensors, to_unit
from pmc2.training.paper_classifiers import PAPER_CLASSIFIERS
from pmc2.training.evaluate import TrainedPipeline, evaluate
from pmc2.training.pairs import CHECKPOINTS, ONNX_MODELS, PAIRS, ModelPair
from pmc2.training.latent_codebook import decoded_entry_terms
from pmc2.training.records import sha256_file
from pmc2.runtime.cifar10 import load_evaluation, load_split

SHIPPED = tuple(sorted({str(path.relative_to(CHECKPOINTS).with_suffix("")) for pair in PAIRS.values()
                        for path in (pair.target, pair.aux, pair.generator, pair.compressor)}))


PAPER_TARGETS_SHIPPED = tuple(name for name in PAPER_CLASSIFIERS if (CHECKPOINTS / f"{name}.pt").is_file())
JUDGES = tuple(sorted(f"judges/{path.name.removesuffix('.record.json')}" for path in (CHECKPOINTS / "judges").glob("*.record.json")))
# the other protectors (runtime.protection): DAPter's converter, FaceMix's split classifier
PROTECTORS = tuple(sorted(str(path.relative_to(CHECKPOINTS)).removesuffix(".record.json")
                          for path in (CHECKPOINTS / "protectors").rglob("*.record.json")))


def test_two_independent_judges_are_shipped() -> None:
    assert len(JUDGES) >= 2


@pytest.mark.parametrize("name", SHIPPED + JUDGES + PROTECTORS + PAPER_TARGETS_SHIPPED)
def test_each_checkpoint_has_a_provenance_record(name: str) -> None:
    record = json.loads((CHECKPOINTS / f"{name}.record.json").read_text())
    assert record["checkpoint"] == f"{Path(name).name}.pt"
    assert record["command"] and record["git_commit"] and record["wall_time_seconds"] > 0
    assert len(record["data_sha256"]) == 64 and "seed" in record["config"]
    assert record["checkpoint_sha256"] == sha256_file(CHECKPOINTS / f"{name}.pt")


def test_records_name_the_real_training_data(shared_cifar: Path) -> None:
    digest = load_split(shared_cifar, "train").sha256()
    for name in SHIPPED:
        assert json.loads((CHECKPOINTS / f"{name}.record.json").read_text())["data_sha256"] == digest


def test_shipped_model_files_stay_small() -> None:
    """Each model file of ours at most 10 MiB, and all of them together (two pairs, three other protector
    models, two judges) inside the repository's 64 MiB budget for weights. The paper's targets are the size
    their architecture fixes: float16, 2 bytes a parameter (plus the container's few KiB a file), each file (a
    checkpoint's first file or a shard of it, ``weight_shards``) under GitHub's 50 MB warning."""
    files = [*CHECKPOINTS.rglob("*.pt"), *ONNX_MODELS.rglob("*.onnx")]
    sizes = {f: f.stat().st_size for f in files if not f.name.endswith(".state.pt")}
    paper: dict[str, list[int]] = {}  # a paper target's name: the sizes of its file and shards
    for path in list(sizes):
        if (name := path.name.split(".")[0]) in PAPER_CLASSIFIERS:
            paper.setdefault(name, []).append(sizes.pop(path))
    assert max(sizes.values()) < 10 * 1024 * 1024, max(sizes, key=sizes.get)
    assert sum(sizes.values()) < 64 * 1024 * 1024
    for name, file_sizes in paper.items():
        parameters = sum(p.numel() for p in build_classifier(name).parameters())
        assert max(file_sizes) < 50_000_000 and sum(file_sizes) <= 2 * parameters + 256 * 1024 * len(file_sizes), name


def test_the_papers_first_target_is_shipped_with_its_clean_accuracy() -> None:
    assert "resnet18" in PAPER_TARGETS_SHIPPED


@pytest.mark.parametrize("name", PAPER_TARGETS_SHIPPED)
def test_paper_target_clean_accuracy_is_re_derived(name: str, shared_cifar: Path) -> None:
    """The recorded clean accuracy on the 5,000 evaluation images, recomputed now (within 0.2 points: bf16
    and float differences between CPUs can move a few borderline images)."""
    checkpoint = CHECKPOINTS / f"{name}.pt"
    recorded = json.loads(evaluation_record_path(checkpoint).read_text())
    evaluation = load_evaluation(shared_cifar)
    fresh = clean_accuracy(load_classifier(checkpoint), *as_tensors(evaluation))
    assert recorded["images"] == 5_000 and recorded["data_sha256"] == evaluation.sha256()
    for key, value in fresh.items():
        assert value == pytest.approx(recorded[key], abs=0.2), key


@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_evaluation_reproduces_the_recorded_numbers(pair: ModelPair, shared_cifar: Path) -> None:
    recorded = json.loads(pair.evaluation_record.read_text())
    fresh = evaluate(TrainedPipeline.load(pair), load_evaluation(shared_cifar), recorded["jpeg_quality"])
    assert fresh["images"] == recorded["images"] == 5_000
    for key, value in recorded["accuracy"].items():
        assert fresh["accuracy"][key] == pytest.approx(value, abs=0.2), key
    assert fresh["mean_abs_ssim"] == pytest.approx(recorded["mean_abs_ssim"], abs=1e-3)
    for key, value in recorded["bytes_mean"].items():
        assert fresh["bytes_mean"][key] == pytest.approx(value, rel=0.01), key


@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_the_codebook_images_carry_the_class_for_the_target_alone_and_resemble_no_picture(pair: ModelPair,
                                                                                        shared_cifar: Path) -> None:
    """Measured on the evaluation images, which shaping the decoder never saw."""
    evaluation = load_evaluation(shared_cifar)
    images, labels = to_unit(torch.from_numpy(evaluation.images).permute(0, 3, 1, 2)), torch.from_numpy(evaluation.labels)
    symbols = torch.load(pair.compressor, weights_only=False)[CODEBOOK_KEY]["symbols"]
    with torch.no_grad():
        terms = decoded_entry_terms(load_compressor(pair.compressor, with_codebook=False), load_classifier(pair.target),
                                    load_classifier(pair.aux), symbols, [images[labels == k] for k in range(len(symbols))])
    assert terms["target_reads"].all() and not terms["aux_reads"].any()
    assert float(terms["abs_ssim"].mean()) < 0.02

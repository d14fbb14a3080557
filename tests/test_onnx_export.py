"""The shipped ONNX models: manifest integrity, re-export, and ORT-vs-torch parity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pmc2.export.onnx_parity import check_parity
from pmc2.export.to_onnx import DEFAULT_CHECKPOINTS, MODELS, export_all
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.model_bundle import DEFAULT_MODELS, ModelBundle, ModelIntegrityError


def test_manifest_describes_every_model_and_the_normalisation() -> None:
    manifest = ModelBundle.open().manifest
    assert set(manifest["models"]) == set(MODELS)
    assert manifest["opset"] >= 17
    assert manifest["normalization"]["mean"] == [0.4914, 0.4822, 0.4465]
    for entry in manifest["models"].values():
        assert entry["inputs"][0]["shape"][0] == "batch" and entry["inputs"][0]["dtype"] == "float32"
        assert len(entry["sha256"]) == 64 and entry["checkpoint"]["sha256"]
    ModelBundle.open().verify_all()


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    shutil.copytree(DEFAULT_MODELS, folder)
    data = bytearray((folder / "generator.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "generator.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="generator.onnx"):
        ModelBundle.open(folder).session("generator")


def test_reexport_reproduces_the_committed_files(tmp_path: Path) -> None:
    export_all(DEFAULT_CHECKPOINTS, tmp_path, MODELS, "fastnet", "compact_resnet", "compressor")
    fresh = json.loads((tmp_path / "manifest.json").read_text())
    committed = json.loads((DEFAULT_MODELS / "manifest.json").read_text())
    for name in MODELS:
        assert fresh["models"][name]["sha256"] == committed["models"][name]["sha256"], name
    assert fresh["entropy_tables"]["sha256"] == committed["entropy_tables"]["sha256"]


def test_parity_on_the_bundled_sample() -> None:
    report = check_parity(DEFAULT_CHECKPOINTS, DEFAULT_MODELS, MODELS, "fastnet", "compact_resnet", "compressor")
    assert report.ok(), str(report)
    assert report.bitstreams_identical and report.cross_decode_identical


def test_parity_on_all_evaluation_images(shared_cifar: Path) -> None:
    report = check_parity(DEFAULT_CHECKPOINTS, DEFAULT_MODELS, ("generator", "target", "aux"), "fastnet",
                          "compact_resnet", "compressor", data=load_evaluation(shared_cifar))
    assert report.images == 5_000
    assert report.ok(), str(report)

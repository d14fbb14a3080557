"""The int8 benchmark quantises the shipped generator and target and reports a verdict it can justify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.paths import SHARED_DATA
from pmc2.runtime.pipeline import classify
from pmc2.runtime.protection import Protector


@pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"needs the validation images in {SHARED_DATA} for calibration")
def test_int8_benchmark_reports_accuracy_latency_and_verdict(tmp_path: Path) -> None:
    out = tmp_path / "int8.json"
    command = [sys.executable, "-m", "pmc2.bench.int8_quantization", "--limit", "100", "--calibration-images", "50",
               "--repeats", "2", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["images"] == 100 and len(report["perturbed_accuracy"]) == 4
    # The fp32 reference is what the shipped models really give on those images, measured here independently.
    evaluation = load_evaluation(SHARED_DATA).subset(slice(0, 100))
    bundle = ModelBundle.open()
    protector = Protector(bundle)
    labels = classify(bundle.session("target"), protector.pixels_for_links(protector.perturb(evaluation.images)))
    measured = 100.0 * float((labels == evaluation.labels).mean())
    assert report["perturbed_accuracy"]["generator fp32 / target fp32"] == pytest.approx(measured)
    # int8 models that ran: accuracy well above chance, every latency a real positive time.
    assert all(value > 30.0 for value in report["perturbed_accuracy"].values())
    assert all(0.0 < value < 100.0 for value in report["latency"].values())
    assert set(report["int8_worth_shipping"]) == {"generator", "target"}
    # ORT's profile says where each model's time goes, and the int8 models really run quantised operators.
    profile = report["profile_ms_per_image_by_operator"]
    assert set(profile) == {f"{name} {kind}" for name in ("generator", "target") for kind in ("fp32", "int8")}
    assert all(sum(by_operator.values()) > 0 for by_operator in profile.values())
    assert any(op.startswith("QLinear") or op == "DequantizeLinear" for op in profile["target int8"])
    assert not any(op.startswith("QLinear") or op == "DequantizeLinear" for op in profile["target fp32"])
    operators = report["operators_after_ort_optimisation"]
    assert operators["target int8"].get("QLinearConv", 0) > 0 and "QLinearConv" not in operators["target fp32"]

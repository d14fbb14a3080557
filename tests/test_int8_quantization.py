"""The int8 benchmark quantises the shipped generator and target and reports a verdict it can justify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pmc2.runtime.cifar10 import SHARED_DATA


@pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"needs the validation images in {SHARED_DATA} for calibration")
def test_int8_benchmark_reports_accuracy_latency_and_verdict(tmp_path: Path) -> None:
    out = tmp_path / "int8.json"
    command = [sys.executable, "-m", "pmc2.bench.int8_quantization", "--limit", "100", "--calibration-images", "50",
               "--repeats", "2", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["images"] == 100 and len(report["perturbed_accuracy"]) == 4
    reference = report["perturbed_accuracy"]["generator fp32 / target fp32"]
    for name, key in (("generator", "generator int8 / target fp32"), ("target", "generator fp32 / target int8")):
        faster = report["latency"][f"{name} int8 ms/image (batch 256)"] < report["latency"][f"{name} fp32 ms/image (batch 256)"]
        assert report["int8_worth_shipping"][name] == (faster and reference - report["perturbed_accuracy"][key] <= 0.5)

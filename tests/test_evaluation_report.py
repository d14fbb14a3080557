"""The evaluation command writes a consistent report from the shipped models (small run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pmc2.evaluation.measurements import CodecResult, lowest_matching_quality
from pmc2.export.pairs import PAIRS


def test_lowest_matching_quality_bisects_to_the_cheapest_jpeg_close_to_png() -> None:
    evaluated = []

    def jpeg_at(quality: int) -> CodecResult:
        evaluated.append(quality)
        return CodecResult("jpeg", 60.0 + 0.5 * (quality - 50), 0.0, 0.0, settings={"quality": quality})

    assert lowest_matching_quality(jpeg_at, reference_accuracy=80.0).settings["quality"] == 89
    assert len(set(evaluated)) <= 8  # of 51 qualities
    assert lowest_matching_quality(jpeg_at, reference_accuracy=99.0).settings["quality"] == 100


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    command = [sys.executable, "-m", "pmc2.evaluation", "--limit", "60", "--latency-images", "6", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_report_files_and_sections(report: Path) -> None:
    grids = [f"privacy_grid_{name}.png" for name in PAIRS]
    for name in ("report.md", "results.json", "rate_accuracy.png", "latency.png", *grids):
        assert (report / name).stat().st_size > 0, name
    text = (report / "report.md").read_text()
    for heading in ("Bandwidth and accuracy", "Batched bitstreams", "chroma subsampling", "Rate–accuracy", "Privacy",
                    "Latency through the real servers"):
        assert heading in text


def test_report_numbers_are_consistent(report: Path) -> None:
    results = json.loads((report / "results.json").read_text())
    assert results["images"] == 60
    assert [target["pair"] for target in results["targets"]] == list(PAIRS)
    default = results["targets"][0]
    qualities = [r["settings"]["quality"] for r in default["jpeg_sweep"]]
    assert qualities == list(range(50, 101))
    for target in results["targets"]:
        assert 50 <= target["jpeg_auto"]["settings"]["quality"] <= 100
        for neural in target["neural"]:
            batched = neural["batched_bytes"]
            # one stream per batch saves the per-stream flush and cannot beat the entropy model's ideal size
            assert neural["ideal_bytes_mean"] - 0.5 <= batched["256"] <= batched["16"] <= neural["bytes_mean"]
    assert len(default["neural"]) >= 4  # shipped + rate–distortion compressors at three λ
    assert {"pmc2/neural", "pp-baseline"} <= set(results["latency"])
    assert all(summary["errors"] == 0 for summary in results["latency"].values())

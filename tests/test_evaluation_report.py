"""The evaluation command writes a consistent report from the shipped models (small run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pmc2.evaluation.measurements import CodecResult, lowest_matching_quality


def test_lowest_matching_quality_picks_the_cheapest_jpeg_close_to_png() -> None:
    sweep = [CodecResult("jpeg", accuracy, 0.0, 0.0, settings={"quality": quality})
             for quality, accuracy in ((50, 70.0), (60, 84.6), (70, 84.4), (80, 85.2))]
    assert lowest_matching_quality(sweep, reference_accuracy=85.0).settings["quality"] == 60
    assert lowest_matching_quality(sweep, reference_accuracy=95.0).settings["quality"] == 80


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    command = [sys.executable, "-m", "pmc2.evaluation", "--limit", "60", "--latency-images", "6", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_report_files_and_sections(report: Path) -> None:
    for name in ("report.md", "results.json", "rate_accuracy.png", "privacy_grid.png", "latency.png"):
        assert (report / name).stat().st_size > 0, name
    text = (report / "report.md").read_text()
    for heading in ("Bandwidth and accuracy", "Batched bitstreams", "chroma subsampling", "Rate–accuracy", "Privacy",
                    "Latency through the real servers"):
        assert heading in text


def test_report_numbers_are_consistent(report: Path) -> None:
    results = json.loads((report / "results.json").read_text())
    assert results["images"] == 60
    qualities = [r["settings"]["quality"] for r in results["jpeg_sweep"]]
    assert qualities == list(range(50, 101))
    assert results["jpeg_auto"]["settings"]["quality"] in qualities
    for neural in results["neural"]:
        batched = neural["batched_bytes"]
        # one stream per batch saves the per-stream flush and cannot beat the entropy model's ideal size
        assert neural["ideal_bytes_mean"] - 0.5 <= batched["256"] <= batched["16"] <= neural["bytes_mean"]
    assert {"pmc2/neural", "pp-baseline"} <= set(results["latency"])
    assert all(summary["errors"] == 0 for summary in results["latency"].values())

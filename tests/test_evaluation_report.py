"""The evaluation command writes a consistent report from the shipped models (small run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pmc2.evaluation.markdown import PRIVACY_HEADING, PRIVACY_SKIPPED
from pmc2.evaluation.measurements import CodecResult, EdgeImages, compressor_with_config, lowest_matching_quality
from pmc2.training.evaluate import TrainedPipeline
from pmc2.training.pairs import DEFAULT_PAIR, PAIRS
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.paths import REPORTS


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
    command = [sys.executable, "-m", "pmc2.evaluation", "--limit", "60", "--latency-images", "6", "--attacker-images", "0",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_report_files_and_sections(report: Path) -> None:
    variants = [variant for pair in PAIRS.values() for variant in pair.with_every_protector()]
    grids = [f"privacy_grid_{variant.name}.png" for variant in variants]
    for name in ("report.md", "results.json", "rate_accuracy.png", "latency.png", *grids):
        assert (report / name).stat().st_size > 0, name
    text = (report / "report.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    for heading in ("Bandwidth and accuracy", "Batched bitstreams", "JPEG chroma subsampling", "Rate–accuracy",
                    "Privacy under attack", "Protectors compared", "Latency through the real servers", "Before → after"):
        assert any(line.startswith(f"## {heading}") for line in headings), heading
    # run with --attacker-images 0: the privacy section says it was skipped and why, and no privacy cell has a number
    # (the section with numbers: tests/test_privacy_attacks.py, on a small attacker budget)
    assert f"{PRIVACY_HEADING}\n\n{PRIVACY_SKIPPED}\n\n## Protectors compared" in text
    protector_rows = [line for line in text.split("## Protectors compared")[1].split("\n## ")[0].splitlines()
                      if line.startswith("| ") and not line.startswith("| protector |")]
    assert len(protector_rows) == 5 * len(variants) + 1  # five links per pair and protector, and FaceMix
    assert all(line.endswith("| not measured | not measured | not measured |") for line in protector_rows)


def test_report_numbers_are_consistent(report: Path) -> None:
    results = json.loads((report / "results.json").read_text())
    assert results["images"] == 60
    variants = [variant for pair in PAIRS.values() for variant in pair.with_every_protector()]
    assert [(target["pair"], target["protector"]) for target in results["targets"]] == [
        (variant.name, variant.protector) for variant in variants]
    assert ("fastnet+dapter", "dapter") in [(variant.name, variant.protector) for variant in variants]
    default = results["targets"][0]
    qualities = [r["settings"]["jpeg_quality"] for r in default["jpeg_sweep"]]
    assert qualities == list(range(50, 101))
    for target in results["targets"]:
        assert 50 <= target["jpeg_auto"]["settings"]["jpeg_quality"] <= 100
        assert target["webp"]["accuracy"] == pytest.approx(target["png"]["accuracy"])  # both lossless
        costs = target["edge_ms_per_image"]
        assert set(costs) == {"png", "jpeg", "webp", "neural", "neural-batch"} and min(costs.values()) > 0
        for neural in target["neural"]:
            batched = neural["batched_bytes"]
            # one stream per batch saves the per-stream flush and cannot beat the entropy model's ideal size
            assert neural["ideal_bytes_mean"] - 0.5 <= batched["256"] <= batched["16"] <= neural["bytes_mean"]
    assert [neural["name"] for neural in default["neural"]] == ["shipped"]
    assert {"pmc2/neural", "pp-baseline", "pmc2+dapter/png", "pp-baseline+dapter"} <= set(results["latency"])
    assert all(summary["errors"] == 0 for summary in results["latency"].values())


def test_committed_table_3_row_is_re_derived_from_the_shipped_models(shared_cifar: Path) -> None:
    """The committed report's default-pair row (S1, PNG, shipped neural compressor on all 5,000 evaluation
    images) recomputed now: accuracy within 0.3 points (float differences between CPUs can move a few
    borderline images), bytes within 0.5% (exact for PNG and the rANS streams, which are CPU-independent)."""
    committed = json.loads((REPORTS / "evaluation" / "results.json").read_text())
    row = committed["targets"][0]
    assert committed["images"] == 5_000 and row["pair"] == DEFAULT_PAIR.name
    edge = EdgeImages(TrainedPipeline.load(DEFAULT_PAIR), load_evaluation(shared_cifar), row["s1"]["settings"]["quality"])
    model, _ = compressor_with_config(DEFAULT_PAIR.compressor)
    fresh = {"s1": edge.s1(), "png": edge.link("png"), "neural": edge.neural(model, "shipped", ())}
    recorded = {"s1": row["s1"], "png": row["png"], "neural": row["neural"][0]}
    for name, result in fresh.items():
        assert result.accuracy == pytest.approx(recorded[name]["accuracy"], abs=0.3), name
        assert result.bytes_mean == pytest.approx(recorded[name]["bytes_mean"], rel=0.005), name
    assert fresh["neural"].ideal_bytes_mean == pytest.approx(recorded["neural"]["ideal_bytes_mean"], rel=0.005)

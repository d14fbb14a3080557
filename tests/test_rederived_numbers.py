"""The committed report's headline numbers recomputed now from the shipped models: every pair and protector's
Table 3 row, FaceMix's accuracy and bytes, and the privacy attacks on a small budget against the numbers committed
from that same budget.

Tolerances: accuracies within 0.3 points (float differences between CPUs move a few borderline images); bytes
within 0.5 % (PNG and the rANS streams are CPU-independent); an attack's SSIM within 0.015 and PSNR within 0.3 dB,
linkability and judges within 3 points (bf16 training of the inverse network differs a little between CPUs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pmc2.evaluation.facemix import measure_facemix
from pmc2.evaluation.fitted import REPORT, committed_fit_records, fitted_section, report_section
from pmc2.evaluation.headline import README, RESULTS, readme_paragraph, where_it_stands
from pmc2.evaluation.latency_table import HEADING as LATENCY_HEADING, latency_section
from pmc2.evaluation.measurements import EdgeImages, compressor_with_config
from pmc2.evaluation.privacy import PrivacyConfig, measure_privacy
from pmc2.evaluation.text_parts import NEXT_SECTION, part_from
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.paths import REPORTS
from pmc2.runtime.protection import DEFAULT_PROTECTOR
from pmc2.training.evaluate import TrainedPipeline
from pmc2.training.pairs import DEFAULT_PAIR, ModelPair, every_variant

VARIANTS = {variant.name: variant for variant in every_variant()}
SAMPLE = REPORTS / "evaluation" / "sample"  # the attacks at a small budget, committed by the commands it records
SAMPLE_IMAGES, SAMPLE_ATTACKER_IMAGES = 500, 2_000


def committed() -> dict:
    return json.loads(RESULTS.read_text())


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_each_committed_table_3_row_is_re_derived(variant: ModelPair, shared_cifar: Path) -> None:
    """S1 (once per target), the PNG link and the shipped compressor on all 5,000 evaluation images."""
    results = committed()
    row = next(target for target in results["targets"] if target["pair"] == variant.name)
    assert results["images"] == 5_000 and row["protector"] == variant.protector
    edge = EdgeImages(TrainedPipeline.load(variant), load_evaluation(shared_cifar), row["s1"]["settings"]["quality"])
    model, _ = compressor_with_config(variant.compressor)
    fresh = {"png": edge.link("png"), "neural": edge.neural(model, "shipped", ())}
    recorded = {"png": row["png"], "neural": row["neural"][0]}
    if variant.protector == DEFAULT_PROTECTOR:
        fresh["s1"], recorded["s1"] = edge.s1(), row["s1"]
    for name, result in fresh.items():
        assert result.accuracy == pytest.approx(recorded[name]["accuracy"], abs=0.3), name
        assert result.bytes_mean == pytest.approx(recorded[name]["bytes_mean"], rel=0.005), name
    assert fresh["neural"].ideal_bytes_mean == pytest.approx(recorded["neural"]["ideal_bytes_mean"], rel=0.005)


def test_facemix_accuracy_and_bytes_are_re_derived(shared_cifar: Path) -> None:
    recorded = committed()["facemix"]
    fresh = measure_facemix(shared_cifar, None, 0, recorded["phone_quality"])
    assert fresh["evaluation_images"] == recorded["evaluation_images"] == 5_000
    assert fresh["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.3)
    for name, size in recorded["bytes_per_image"].items():
        assert fresh["bytes_per_image"][name] == pytest.approx(size, rel=0.005), name
    # the network trained without mixing, on the same S1 images, is the pair's target: Table 3's S1 accuracy
    s1 = next(row["s1"] for row in committed()["targets"] if row["pair"] == DEFAULT_PAIR.name)
    assert fresh["without_mixing"]["checkpoint"] == DEFAULT_PAIR.target.name
    assert fresh["without_mixing"]["accuracy"] == pytest.approx(s1["accuracy"], abs=0.05)


def _close_attacks(fresh: dict, recorded: dict, where: str) -> None:
    assert fresh["inverse_attack"]["ssim"] == pytest.approx(recorded["inverse_attack"]["ssim"], abs=0.015), where
    assert fresh["inverse_attack"]["psnr_db"] == pytest.approx(recorded["inverse_attack"]["psnr_db"], abs=0.3), where
    assert fresh["label_only"]["ssim"] == pytest.approx(recorded["label_only"]["ssim"], abs=0.005), where
    assert fresh["label_only"]["psnr_db"] == pytest.approx(recorded["label_only"]["psnr_db"], abs=0.1), where
    for judge, value in recorded["judges_on_reconstruction"].items():
        assert fresh["judges_on_reconstruction"][judge] == pytest.approx(value, abs=3.0), f"{where}: {judge}"


def test_the_committed_sample_attacks_every_pair_and_protector() -> None:
    recorded = json.loads((SAMPLE / "privacy.json").read_text())
    assert recorded["evaluation_images"] == SAMPLE_IMAGES and recorded["config"]["attacker_images"] == SAMPLE_ATTACKER_IMAGES
    assert [pair["pair"] for pair in recorded["pairs"]] == list(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_privacy_attacks_on_a_small_budget_match_the_committed_sample(variant: ModelPair, shared_cifar: Path,
                                                                       tmp_path: Path) -> None:
    """One pair and protector per test: each trains two inverse networks, several minutes on a slow CPU."""
    recorded = next(pair for pair in json.loads((SAMPLE / "privacy.json").read_text())["pairs"]
                    if pair["pair"] == variant.name)
    config = PrivacyConfig(attacker_images=SAMPLE_ATTACKER_IMAGES, cache=tmp_path)
    fresh = measure_privacy(shared_cifar, SAMPLE_IMAGES, config, [variant])["pairs"][0]
    for view, result in recorded["views"].items():
        _close_attacks(fresh["views"][view], result, f"{variant.name} {view}")
        assert fresh["views"][view]["two_choice"]["inverse"] == pytest.approx(result["two_choice"]["inverse"], abs=3.0)


def test_facemix_attacks_on_a_small_budget_match_the_committed_sample(shared_cifar: Path) -> None:
    recorded = json.loads((SAMPLE / "facemix.json").read_text())
    assert (recorded["evaluation_images"], recorded["attacker_images"]) == (SAMPLE_IMAGES, SAMPLE_ATTACKER_IMAGES)
    fresh = measure_facemix(shared_cifar, SAMPLE_IMAGES, SAMPLE_ATTACKER_IMAGES, recorded["phone_quality"])
    _close_attacks(fresh["attacks"], recorded["attacks"], "facemix")
    assert fresh["attacks"]["two_choice_inverse"] == pytest.approx(recorded["attacks"]["two_choice_inverse"], abs=3.0)


def test_the_readme_says_where_it_stands_from_the_committed_results() -> None:
    """Regenerate with ``python -m pmc2.evaluation.headline --write-readme``."""
    assert readme_paragraph(README.read_text()) == where_it_stands(committed())


def test_the_report_lists_every_committed_fitting_run() -> None:
    """Regenerate with ``python -m pmc2.evaluation.fitted --write-report``."""
    assert report_section(REPORT.read_text()) == fitted_section(committed_fit_records())


def test_the_reports_latency_section_is_rendered_from_the_committed_latencies() -> None:
    """Each ratio to the unprotected run comes from the committed per-run p50s, as ``python -m pmc2.evaluation``
    writes them."""
    results = committed()
    expected = latency_section(results["latency"], results["latency_images"])
    assert part_from(REPORT.read_text(), LATENCY_HEADING, NEXT_SECTION) == expected
    assert f"| unprotected | {results['latency']['unprotected']['accuracy']:.1f}% |" in expected
    assert "| 1.00 |" in expected.split("| unprotected |")[1].splitlines()[0]

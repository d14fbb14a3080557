"""Each baseline against its own paper (evaluation/baseline_claims.py): the verdicts turn at the papers' thresholds,
unmeasured attacks are said to be unmeasured, and training hours add up a checkpoint's records down its --init chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pmc2.evaluation.baseline_claims import (DAPTER_MAX_DROP, DAPTER_MAX_SSIM, FACEMIX_MAX_DROP, BASELINE_CLAIMS,
                                             render_baseline_claims)
from pmc2.evaluation.measurements import CodecResult
from pmc2.training.records import lineage_hours


def dapter_target(png: float, neural: float) -> dict:
    return {"pair": "fastnet+dapter", "protector": "dapter", "target": "fastnet",
            "privacy": {"target_clean": 92.0, "target_after_s1": 89.0}, "png": CodecResult("png", png, 1900.0, 190.0),
            "neural": [CodecResult("shipped", neural, 67.5, 2.0)], "training_hours": {"protector": 2.0, "compressor": None}}


def perturbed_view(inverse_ssim: float) -> dict:
    return {"pair": "fastnet+dapter", "views": {"perturbed": {"inverse_attack": {"ssim": inverse_ssim},
                                                              "label_only": {"ssim": 0.14}}}}


def facemix(accuracy: float, inverse_ssim: float | None, two_choice: float = 50.0) -> dict:
    attacks = None if inverse_ssim is None else {
        "inverse_attack": {"ssim": inverse_ssim}, "label_only": {"ssim": 0.14}, "two_choice_inverse": two_choice}
    return {"target": "fastnet", "accuracy": accuracy, "without_mixing": {"accuracy": 88.8}, "attacks": attacks,
            "training_hours": 3.0}


def verdicts(results: dict) -> list[bool | None]:
    return [claim.holds for claims_of in BASELINE_CLAIMS.values() for claim in claims_of(results)]


@pytest.mark.parametrize("step, held", [(-0.01, True), (0.01, False)])
def test_each_verdict_turns_at_its_threshold(step: float, held: bool) -> None:
    png = 92.0 - DAPTER_MAX_DROP - step  # a drop just inside (step < 0) or just outside the paper's
    results = {"targets": [dapter_target(png, png - 1.0 - step)],
               "privacy_attacks": {"pairs": [perturbed_view(DAPTER_MAX_SSIM + step)]},
               "facemix": facemix(88.8 - FACEMIX_MAX_DROP - step, 0.14 + 0.02 + step, 55.0 + step)}
    assert verdicts(results) == [held] * 5


def test_unmeasured_attacks_are_said_so_and_every_claim_is_in_the_section() -> None:
    results = {"targets": [dapter_target(90.0, 89.5)], "facemix": facemix(88.0, None)}
    assert verdicts(results) == [True, None, True, True, None]
    section = render_baseline_claims(results)
    rows = [line for line in section.splitlines() if line.startswith("| DAPter") or line.startswith("| FaceMix")]
    assert len(rows) == 5 and sum(row.endswith("| not measured |") for row in rows) == 2
    assert "| dapter | `fastnet` | 2.0 | no record |" in section and "| facemix | `fastnet` | 3.0 |" in section


def test_training_hours_add_up_the_records_down_the_init_chain(tmp_path: Path) -> None:
    def record(seconds: float, init: dict | None) -> dict:
        return {"wall_time_seconds": seconds, "config": {"init": init}}

    start = record(1800.0, None)
    tuned = record(3600.0, {"file": "start.pt", "sha256": "", "record": start})
    (tmp_path / "tuned.record.json").write_text(json.dumps(record(5400.0, {"file": "tuned.pt", "record": tuned})))
    assert lineage_hours(tmp_path / "tuned.pt") == pytest.approx(3.0)
    (tmp_path / "alone.record.json").write_text(json.dumps({"wall_time_seconds": 900.0, "config": {}}))
    assert lineage_hours(tmp_path / "alone.pt") == pytest.approx(0.25)
    assert lineage_hours(tmp_path / "unrecorded.pt") is None

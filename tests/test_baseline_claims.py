"""Each baseline against its own paper (evaluation/baseline_claims.py): the verdicts turn at the papers' thresholds,
unmeasured attacks are said to be unmeasured, and training hours add up a checkpoint's records down its --init chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pmc2.evaluation.baseline_claims import (DAPTER_MAX_DROP, DAPTER_MAX_SSIM, FACEMIX_MAX_DROP, NEURAL_MAX_GAP,
                                             BASELINE_CLAIMS, render_baseline_claims)
from pmc2.evaluation.privacy_goals import Goals
from pmc2.evaluation.measurements import CodecResult
from pmc2.training.records import lineage_hours


def dapter_target(png: float, neural: float, clean: float = 92.0, received: float = 92.0) -> dict:
    return {"pair": "fastnet+dapter", "protector": "dapter", "target": "fastnet",
            "privacy": {"target_clean": clean, "target_after_s1": received}, "png": CodecResult("png", png, 1900.0, 190.0),
            "neural": [CodecResult("shipped", neural, 67.5, 2.0)], "training_hours": {"protector": 2.0, "compressor": None}}


def perturbed_view(inverse_ssim: float) -> dict:
    return {"pair": "fastnet+dapter", "views": {"perturbed": {"inverse_attack": {"ssim": inverse_ssim},
                                                              "label_only": {"ssim": 0.14}}}}


LABEL_ONLY = {"ssim": 0.14, "psnr_db": 13.0, "judges": {"fastnet": 18.0, "compact_resnet": 19.0}}


def facemix_attacks(ssim: float = 0.15, psnr_db: float = 13.2, judge: float = 18.0, two_choice: float = 52.0) -> dict:
    """FaceMix's attacks, by default inside every margin of the label-only baseline."""
    return {"inverse_attack": {"ssim": ssim, "psnr_db": psnr_db}, "label_only": LABEL_ONLY,
            "judges_on_reconstruction": {"fastnet": judge, "compact_resnet": 19.0}, "two_choice_inverse": two_choice}


def facemix(accuracy: float, attacks: dict | None) -> dict:
    return {"target": "fastnet", "accuracy": accuracy, "without_mixing": {"accuracy": 88.8}, "attacks": attacks,
            "training_hours": 3.0}


def verdicts(results: dict) -> list[bool | None]:
    return [claim.holds for claims_of in BASELINE_CLAIMS.values() for claim in claims_of(results)]


@pytest.mark.parametrize("step, held", [(-0.01, True), (0.01, False)])
def test_each_verdict_turns_at_its_threshold(step: float, held: bool) -> None:
    png = 92.0 - DAPTER_MAX_DROP - step  # a drop just inside (step < 0) or just outside the paper's
    goals = Goals()
    results = {"targets": [dapter_target(png, png - NEURAL_MAX_GAP - step)],
               "privacy_attacks": {"pairs": [perturbed_view(DAPTER_MAX_SSIM + step)]},
               "facemix": facemix(88.8 - FACEMIX_MAX_DROP - step,
                                  facemix_attacks(LABEL_ONLY["ssim"] + goals.ssim_margin + step,
                                                  LABEL_ONLY["psnr_db"] + goals.psnr_margin_db + step,
                                                  LABEL_ONLY["judges"]["fastnet"] + step, goals.two_choice_max + step))}
    assert verdicts(results) == [held] * 6


@pytest.mark.parametrize("leak", [{"ssim": 0.2}, {"psnr_db": 14.0}, {"judge": 25.0}, {"two_choice": 60.0}])
def test_facemix_leaks_when_any_one_attack_beats_the_label_only_baseline(leak: dict) -> None:
    assert verdicts({"targets": [], "facemix": facemix(88.0, facemix_attacks())}) == [True, True]
    assert verdicts({"targets": [], "facemix": facemix(88.0, facemix_attacks(**leak))}) == [True, False]


def test_dapters_drop_is_counted_against_the_clean_images_and_against_those_it_is_given() -> None:
    results = {"targets": [dapter_target(87.0, 86.5, clean=92.0, received=89.0)]}  # −5 clean, −2 as given
    assert verdicts(results) == [False, True, None, True]


def test_unmeasured_attacks_are_said_so_and_every_claim_is_in_the_section() -> None:
    results = {"targets": [dapter_target(90.0, 89.5)], "facemix": facemix(88.0, None)}
    assert verdicts(results) == [True, True, None, True, True, None]
    section = render_baseline_claims(results)
    rows = [line for line in section.splitlines() if line.startswith("| DAPter") or line.startswith("| FaceMix")]
    assert len(rows) == 6 and sum(row.endswith("| not measured |") for row in rows) == 2
    assert "| dapter | `fastnet` | 2.0 | no record |" in section and "| facemix | `fastnet` | 3.0 |" in section
    assert "No baseline was measured." in render_baseline_claims({"targets": []})


def test_training_hours_add_up_each_run_once_down_every_branch_of_starts_but_the_targets(tmp_path: Path) -> None:
    def record(command: str, seconds: float, init: dict | None = None, sha256: str = "") -> dict:
        return {"command": command, "checkpoint_sha256": sha256, "git_commit": "c", "wall_time_seconds": seconds,
                "metrics": {"epoch": 1}, "config": {"init": init}}

    def start(run: dict) -> dict:
        return {"file": "start.pt", "sha256": run["checkpoint_sha256"], "record": run}

    target = record("the target's training", 7200.0, sha256="target")
    rate_distortion = record("a compressor's rate-distortion start", 1800.0)
    task = record("its task training", 3600.0, start(rate_distortion))
    protector = record("a protector fine-tuned from the target", 900.0, start(target))
    joint = record("end to end", 5400.0, {"encoder": "target.pt", "generator": start(protector), "compressor": start(task)})
    again = record("end to end again", 360.0, {"generator": start(joint), "compressor": start(joint)})  # counted once
    (tmp_path / "generator.record.json").write_text(json.dumps(again))
    assert lineage_hours(tmp_path / "generator.pt") == pytest.approx((360 + 5400 + 900 + 7200 + 3600 + 1800) / 3600)
    assert lineage_hours(tmp_path / "generator.pt", frozenset({"target"})) == pytest.approx(
        (360 + 5400 + 900 + 3600 + 1800) / 3600)
    assert lineage_hours(tmp_path / "unrecorded.pt") is None

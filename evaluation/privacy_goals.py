"""What a protector must achieve under attack: no better than the label-only baseline (the cloud's label), within
margins, and the verdict of one view's attacks against them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Goals:
    """The privacy issue's goals: attack no better than the label-only baseline (the cloud's label), within
    these margins."""

    ssim_margin: float = 0.02
    psnr_margin_db: float = 0.5
    two_choice_max: float = 55.0
    aux_max: float = 10.0


def verdicts(result: dict, goals: Goals) -> dict[str, bool]:
    """Which of the issue's goals one view meets, against its label-only baseline (the cloud's label)."""
    baseline = result["label_only"]
    judges = set(baseline["judges"])
    aux = [result["classifiers_on_view"]["aux"], result["classifiers_on_view_masked"]["aux"]["best_accuracy"]]
    return {
        "attack_ssim": result["inverse_attack"]["ssim"] <= baseline["ssim"] + goals.ssim_margin,
        "attack_psnr": result["inverse_attack"]["psnr_db"] <= baseline["psnr_db"] + goals.psnr_margin_db,
        "two_choice": max(result["two_choice"].values()) <= goals.two_choice_max,
        "judges": all(max(result["classifiers_on_view"][j], result["classifiers_on_view_masked"][j]["best_accuracy"],
                          result["judges_on_reconstruction"][j]) <= baseline["judges"][j] for j in judges),
        "aux": max(aux) <= goals.aux_max,
        "judges_beyond_label": all(reading["bits"] <= reading["chance_bits_p95"]
                                   for reading in result["judge_bits_beyond_cloud_label"].values()),
    }

"""The README's "Where it stands" paragraph, written from the report's ``results.json`` (nothing typed in).

    python -m pmc2.evaluation.headline                  # print it
    python -m pmc2.evaluation.headline --write-readme   # put it in README.md in place of the old one
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pmc2.evaluation.text_parts import part_from, rewrite_part
from pmc2.runtime.paths import REPO_ROOT, REPORTS
from pmc2.runtime.protection import DEFAULT_PROTECTOR
from pmc2.training.pairs import DEFAULT_PAIR, PAIRS

README = REPO_ROOT / "README.md"
RESULTS = REPORTS / "evaluation" / "results.json"
LEAD = "**Where it stands.**"
PARAGRAPH_END = r"\n\n"


def _measured(results: dict, target: str, protector: str) -> dict:
    """Table 3's measurements of ``target`` with ``protector`` in the generator's slot."""
    return next(row for row in results["targets"] if row["target"] == target and row["protector"] == protector)


def _attacked(results: dict, pair: str, view: str) -> dict:
    """The privacy attacks on one view of one measured pair (``pair`` as the report names it)."""
    return next(row for row in results["privacy_attacks"]["pairs"] if row["pair"] == pair)["views"][view]


def _neural(row: dict) -> dict:
    return row["neural"][0]


def _same_links(row: dict) -> str:
    """Whether the pixel links read as the neural one; their accuracies otherwise."""
    accuracies = {round(row[key]["accuracy"], 2) for key in ("png", "jpeg_auto")}
    if accuracies == {round(_neural(row)["accuracy"], 2)}:
        return "the same accuracy on the PNG and JPEG links"
    return f"{row['png']['accuracy']:.2f} % on the PNG link and {row['jpeg_auto']['accuracy']:.2f} % on the JPEG link"


def _protected(results: dict) -> str:
    default = _measured(results, DEFAULT_PAIR.target.stem, DEFAULT_PROTECTOR)
    others = [_measured(results, pair.target.stem, DEFAULT_PROTECTOR) for pair in PAIRS.values() if pair != DEFAULT_PAIR]
    neural = _neural(default)
    second = "; ".join(f"`{row['target']}`: {_neural(row)['accuracy']:.2f} % at {_neural(row)['bytes_mean']:.2f} B, "
                       f"{_neural(row)['batched_bytes']['256']:.2f} B at 256 per stream" for row in others)
    return (f"The shipped models (generator and compressor trained end to end, with a latent codebook) reach "
            f"**{neural['bytes_mean']:.2f} B/image at {neural['accuracy']:.2f} %** on the neural link for the default "
            f"pair, {neural['batched_bytes']['256']:.2f} B/image with 256 images per rANS stream, and "
            f"{_same_links(default)}, which carry the edge's own decode x̂ (other pairs: {second}).")


def _inverted(attack: dict) -> str:
    inverse, baseline = attack["inverse_attack"], attack["label_only"]
    return (f"SSIM {inverse['ssim']:.3f} / PSNR {inverse['psnr_db']:.2f} dB, next to {baseline['ssim']:.3f} / "
            f"{baseline['psnr_db']:.2f} dB for the label-only baseline (the class-mean image of the label the "
            f"cloud returns)")


def _privacy(results: dict) -> str:
    attack = _attacked(results, DEFAULT_PAIR.name, "neural")
    return (f"Every image the cloud decodes is one of the codebook's class-code images: a learned inverse network "
            f"reconstructs the evaluation images at {_inverted(attack)}, and tells two images the cloud labels alike apart "
            f"{attack['two_choice']['inverse']:.1f} % of the time (chance: 50 %).")


def _alternatives(results: dict) -> str:
    """Each other image protector trained for each pair, then FaceMix: accuracy, bytes and the attacks."""
    rows: dict[str, list[str]] = {}
    for pair in PAIRS.values():
        for variant in pair.with_every_protector()[1:]:
            measured = _measured(results, pair.target.stem, variant.protector)
            attack = _attacked(results, variant.name, "perturbed")
            rows.setdefault(variant.protector, []).append(
                f"`{pair.target.stem}`: PNG link {measured['png']['accuracy']:.2f} % at "
                f"{measured['png']['bytes_mean']:,.0f} B, inverted to SSIM {attack['inverse_attack']['ssim']:.3f} / "
                f"{attack['inverse_attack']['psnr_db']:.2f} dB (label-only {attack['label_only']['ssim']:.3f}), "
                f"linked {attack['two_choice']['inverse']:.1f} % of the time")
    sentence = "Under the same attacks " + ", ".join(f"{name} ({'; '.join(found)})" for name, found in rows.items())
    facemix = results.get("facemix")
    if facemix and facemix.get("attacks"):
        attacks = facemix["attacks"]
        sentence += (f", and facemix ({facemix['accuracy']:.2f} % at "
                     f"{facemix['bytes_per_image']['batch of 256']:,.0f} B/image of float16 mixtures) is inverted to "
                     f"SSIM {attacks['inverse_attack']['ssim']:.3f} / {attacks['inverse_attack']['psnr_db']:.2f} dB "
                     f"(label-only {attacks['label_only']['ssim']:.3f}) and linked "
                     f"{attacks['two_choice_inverse']:.1f} % of the time")
    return sentence + "."


def where_it_stands(results: dict) -> str:
    """The paragraph, one line per sentence group, every number from ``results`` (a full report's: with the
    privacy attacks)."""
    if results.get("privacy_attacks") is None:
        raise ValueError("these results were measured without the privacy attacks (--attacker-images 0)")
    return "\n".join([
        f"{LEAD} {_protected(results)}",
        _privacy(results),
        _alternatives(results),
        f"The numbers, grids and the earlier models' measurements are in `reports/evaluation/report.md` "
        f"({results['images']:,} evaluation images, {results['cpu']}, `{results['command']}`).",
    ])


def readme_paragraph(readme: str) -> str:
    """The paragraph that starts with the lead in ``readme``, up to the next blank line."""
    return part_from(readme, LEAD, PARAGRAPH_END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--write-readme", action="store_true", help="replace the paragraph in README.md")
    args = parser.parse_args()
    paragraph = where_it_stands(json.loads(args.results.read_text()))
    if args.write_readme:
        rewrite_part(README, LEAD, PARAGRAPH_END, paragraph)
    print(paragraph)


if __name__ == "__main__":
    main()

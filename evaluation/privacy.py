"""Privacy measured by attacking it: what the cloud receives, against what knowing only the label allows.

    python -m pmc2.evaluation.privacy [--limit N] [--retrain-attacks]   → reports/evaluation/privacy.{json,md}, grids

Attacker (Kerckhoffs): knows the protector's model (generator or DAPter converter) and the compressor,
holds the public CIFAR-10 training images, and learns the label the cloud returns for each image (the
target's prediction on the view it receives, not the true label). Attacked views: the protected
image x' (PNG / JPEG links) and the neural decode x̂ (the bitstream), for every pair and protector. Measured on the evaluation images:
  1. learned inverse: PSNR / SSIM of a U-Net trained on (view, original) pairs of public images;
  2. label-only baseline, per view: the class-mean image of the cloud's label, what any scheme that leaks
     only that label allows (the true label's, an oracle no attacker has, is kept for reference);
  3. independent judges (and the aux model) on each view, on the reconstructions and on the baseline,
     also with each fixed 10×10 region masked; and what the judges' readings add to the cloud's label
     (bits of the true label beyond it, against their chance level);
  4. linkability: two-choice game between images the cloud labels alike (50 % = nothing beyond the label) and
     rank-1 re-identification among 1,000 same-class images (0.1 % = none).
The goals are the privacy issue's; every row says whether it meets them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pmc2.evaluation import plots
from pmc2.evaluation.image_similarity import similarity_summary
from pmc2.evaluation.inverse_attack import InverseAttackConfig, cached_inverse, reconstruct
from pmc2.evaluation.judges import JUDGES, accuracy, bits_beyond_label, load_judges, masked_accuracy, predictions
from pmc2.evaluation.label_only import label_only_baseline
from pmc2.evaluation.markdown import render_privacy
from pmc2.evaluation.linkability import rank1_reidentification, same_class_partners, two_choice_success
from pmc2.evaluation.privacy_goals import Goals, verdicts
from pmc2.evaluation.privacy_views import VIEWS, cloud_views
from pmc2.training.data import as_tensors, class_mean_images, to_unit
from pmc2.training.evaluate import TrainedPipeline
from pmc2.training.pairs import ModelPair, every_variant
from pmc2.training.records import git_commit, sha256_file
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation, load_split
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY
from pmc2.runtime.paths import CHECKPOINTS, REPO_ROOT, REPORTS, SHARED_DATA
from pmc2.value_ranges import positive_int

ATTACK_CACHE = REPO_ROOT / "runs" / "privacy_attacks"
GRID_IMAGES = 8


@dataclass
class PrivacyConfig:
    attacker_images: int = 20_000  # public training images the attacker runs through the models
    phone_quality: int = PHONE_JPEG_QUALITY
    inverse: InverseAttackConfig = field(default_factory=InverseAttackConfig)
    retrain: bool = False
    seed: int = 0
    cache: Path = ATTACK_CACHE
    judges: Path = JUDGES


def _judge_scores(models: dict[str, torch.nn.Module], images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    return {name: accuracy(model, images, labels) for name, model in models.items()}


def attack_view(view: torch.Tensor, public_view: torch.Tensor, context: dict) -> dict:
    """Every attack on one view of one pair (``context`` holds what all views share)."""
    originals, labels = context["originals"], context["labels"]
    network, record = cached_inverse(context["cache"] / f"{context['view']}.pt", context["key"] | {"view": context["view"]},
                                     public_view, context["public_originals"], context["config"].inverse,
                                     context["config"].retrain, f"inverse attack on {context['view']}")
    reconstructed = reconstruct(network, view)
    cloud_labels = context["cloud_labels"](view)
    label_only, baseline = label_only_baseline(context["class_means"], cloud_labels, originals, labels,
                                               context["judges"])
    partners = same_class_partners(cloud_labels, torch.Generator().manual_seed(context["config"].seed))
    rng = torch.Generator().manual_seed(context["config"].seed)
    public_labels = context["public_labels"]
    classifiers = {**context["judges"], "aux": context["aux"]}
    return {
        "label_only": baseline,
        "inverse_attack": similarity_summary(reconstructed, originals),
        "inverse_attack_record": record,
        "classifiers_on_view": _judge_scores(classifiers, view, labels),
        "classifiers_on_view_masked": {name: masked_accuracy(model, view, labels) for name, model in classifiers.items()},
        "judges_on_reconstruction": _judge_scores(context["judges"], reconstructed, labels),
        "judge_bits_beyond_cloud_label": {
            f"{name} on {seen}": bits_beyond_label(predictions(judge, images), labels, cloud_labels, context["config"].seed)
            for name, judge in context["judges"].items()
            for seen, images in (("view", view), ("reconstruction", reconstructed))},
        "two_choice": {"inverse": two_choice_success(reconstructed, originals, originals[partners]),
                       "view": two_choice_success(view, view, view[partners])},
        "rank1_of_1000": {
            "inverse": rank1_reidentification(reconstructed, originals, labels, context["public_originals"],
                                              public_labels, generator=rng),
            "view": rank1_reidentification(view, view, labels, public_view, public_labels, generator=rng),
        },
        "_reconstructed": reconstructed[:GRID_IMAGES],
        "_label_only": label_only[:GRID_IMAGES],
    }


def attack_pair(pair: ModelPair, evaluation: LabelledImages, public: LabelledImages, class_means: torch.Tensor,
                judges: dict[str, torch.nn.Module], config: PrivacyConfig, goals: Goals = Goals()) -> dict:
    """Every attack on both views of ``pair``, each beside its label-only baseline; grid rows."""
    pipeline = TrainedPipeline.load(pair)
    evaluation_images, labels = as_tensors(evaluation)
    public_images, public_labels = as_tensors(public)
    originals, public_originals = to_unit(evaluation_images), to_unit(public_images)
    views = cloud_views(pipeline, evaluation.images, config.phone_quality, f"views of the evaluation images ({pair.name})")
    public_views = cloud_views(pipeline, public.images, config.phone_quality, f"views of public images ({pair.name})")
    context = {
        "originals": originals, "labels": labels, "public_originals": public_originals, "public_labels": public_labels,
        "judges": judges, "aux": pipeline.aux, "config": config, "cache": config.cache / pair.name,
        "cloud_labels": lambda view: predictions(pipeline.target, view), "class_means": class_means,
        "key": {"pair": pair.name, "generator_sha256": sha256_file(pair.generator),
                "compressor_sha256": sha256_file(pair.compressor), "public_images_sha256": public.sha256(),
                "phone_quality": config.phone_quality},
    }
    results = {"pair": pair.name, "protector": pair.protector,
               "label_only_true_label": label_only_baseline(class_means, labels, originals, labels, judges)[1],
               "views": {}}
    grid = {"original": originals[:GRID_IMAGES]}
    for name in VIEWS:
        same_as = next((seen for seen in results["views"] if torch.equal(views[seen], views[name])), None)
        if same_as is not None:  # a generator trained with the "decoded" tie: every link carries x̂
            results["views"][name] = {"same_as": same_as, **results["views"][same_as]}
            continue
        result = attack_view(views[name], public_views[name], context | {"view": name})
        grid[f"{name} view"] = views[name][:GRID_IMAGES]
        grid[f"inverse attack on {name}"] = result.pop("_reconstructed")
        grid[f"label-only baseline for {name}"] = result.pop("_label_only")
        result["goals_met"] = verdicts(result, goals)
        results["views"][name] = result
    results["_grid"] = {title: (rows.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
                        for title, rows in grid.items()}
    return results


def measure_privacy(data: Path, limit: int | None, config: PrivacyConfig, variants: list[ModelPair] | None = None) -> dict:
    """The privacy section for ``variants`` (default: every one), on ``data``'s evaluation images, the attacker
    holding its training set."""
    evaluation = load_evaluation(data)
    if limit:
        evaluation = evaluation.subset(slice(0, limit))
    public_all = load_split(data, "train")
    public = public_all.subset(np.random.default_rng(config.seed).permutation(len(public_all))[: config.attacker_images])
    class_means = class_mean_images(*as_tensors(public_all))
    judges = load_judges(config.judges)
    return {
        "attacker": "knows the protector's model (the generator, or DAPter's converter) and the compressor, holds the public "
                    f"CIFAR-10 training images ({config.attacker_images} run through the models), learns the label the "
                    "cloud returns for each image",
        "evaluation_images": len(evaluation), "data": str(data), "checkpoints": str(CHECKPOINTS),
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "goals": asdict(Goals()),
        "pairs": [attack_pair(variant, evaluation, public, class_means, judges, config)
                  for variant in (every_variant() if variants is None else variants)],
    }


def write_grids(privacy: dict, out: Path) -> None:
    for pair in privacy["pairs"]:
        plots.image_grid(pair.pop("_grid"), out / f"privacy_attack_grid_{pair['pair']}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="CIFAR-10 folder (the attacker's public images too)")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N evaluation images")
    parser.add_argument("--attacker-images", type=positive_int, default=PrivacyConfig.attacker_images)
    parser.add_argument("--retrain-attacks", action="store_true", help="train the inverse networks again")
    parser.add_argument("--out", type=Path, default=REPORTS / "evaluation")
    args = parser.parse_args()
    privacy = {"command": " ".join(["python -m pmc2.evaluation.privacy", *sys.argv[1:]]), "git_commit": git_commit(),
               **measure_privacy(args.data, args.limit, PrivacyConfig(attacker_images=args.attacker_images,
                                                                      retrain=args.retrain_attacks))}
    args.out.mkdir(parents=True, exist_ok=True)
    write_grids(privacy, args.out)
    (args.out / "privacy.json").write_text(json.dumps(privacy, indent=2) + "\n")
    (args.out / "privacy.md").write_text(render_privacy(privacy) + "\n")
    print(render_privacy(privacy))


if __name__ == "__main__":
    main()

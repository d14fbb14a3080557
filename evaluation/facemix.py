"""FaceMix measured like the other protectors: accuracy, bytes on the wire, edge cost, and the same attacks on
what its cloud receives — keyed mixtures of features, not images.

    python -m pmc2.evaluation.facemix [--limit N] [--reference CKPT]   → reports/evaluation/facemix.{json,md}, attack grid

    evaluation images ──phone JPEG──▶ edge features ──groups of 4, fresh orthogonal keys──▶ mixtures (float16 wire)
        ──cloud part──▶ outputs (float16 wire) ──demix, head (edge)──▶ labels
    public images ──the same, keys known to the attacker──▶ (mixture, original with the mixture's largest
        coefficient) pairs ──▶ inverse network ──▶ reconstructions of the evaluation images' mixtures

The attacker (Kerckhoffs) knows the FaceMix model and holds the public training images; the keys stay on the
edge. Each mixture is scored against the original that dominates it, next to the label-only baseline: the
class-mean image of the label FaceMix returns for that original, what a scheme leaking its answer would allow
(the cloud itself never learns a label here). Two-choice partners share that label, as for the other protectors.

FaceMix's own claim is a small accuracy cost against the same network trained without mixing: the reference
(by default the pair's target, FastNet, trained with the same recipe) is measured on the same S1 images, and
the settings in which the two training records differ (besides the model) are listed beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pmc2.machine import cpu_model
from pmc2.evaluation import plots
from pmc2.evaluation.edge_cost import median_ms_per_image
from pmc2.evaluation.flops import gflops
from pmc2.evaluation.image_similarity import similarity_summary
from pmc2.evaluation.inverse_attack import FeatureInverse, InverseAttackConfig, reconstruct, train_inverse
from pmc2.evaluation.judges import accuracy, load_judges
from pmc2.evaluation.label_only import label_only_baseline
from pmc2.evaluation.linkability import rank1_reidentification, same_class_partners, two_choice_success
from pmc2.training.classifier_accuracy import clean_accuracy
from pmc2.training.classifiers import load_classifier
from pmc2.training.compressor import load_compressor
from pmc2.training.data import as_tensors, class_mean_images, to_unit
from pmc2.training.facemix import SPLIT_PARTS, FaceMixPart
from pmc2.training.generator import load_generator
from pmc2.training.pairs import DEFAULT_PAIR, ModelPair
from pmc2.training.records import git_commit, lineage_hours, record_path, sha256_file
from pmc2.training.train_classifier import ClassifierConfig
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation, load_split
from pmc2.runtime.facemix import FaceMix
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY, through_phone_jpeg
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.paths import REPORTS, SHARED_DATA
from pmc2.runtime.tensor_payload import from_npy, to_npy
from pmc2.value_ranges import non_negative_int, positive_int

BATCH = 256  # the edge's largest micro-batch (a multiple of the group size: no decoys)
GRID_IMAGES = 8


class FaceMixLink:
    """Edge and cloud parts of one bundle, with the float16 wire between them both ways."""

    def __init__(self, bundle: ModelBundle, seed: int) -> None:
        self.edge = FaceMix(bundle, "edge", rng=np.random.default_rng(seed))
        self.cloud = FaceMix(bundle, "cloud")

    def mixtures(self, images_uint8: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], int]:
        """What the cloud receives for one batch, as it receives it (float16-rounded), the keys, and its bytes."""
        mixed, keys = self.edge.edge_part(images_uint8)
        body = to_npy(mixed)
        return from_npy(body, mixed.shape[1:], len(mixed)), keys, len(body)

    def labels(self, received: np.ndarray, keys: list[np.ndarray], images: int) -> np.ndarray:
        outputs = to_npy(self.cloud.cloud_part(received))
        return self.edge.finish(from_npy(outputs, self.edge.cloud_output_shape, len(received)), keys, images)


def dominant_originals(keys: list[np.ndarray]) -> np.ndarray:
    """For each mixture of a batch, the index (within the batch) of the image with the largest |coefficient|."""
    starts = np.cumsum([0, *[len(key) for key in keys[:-1]]])
    return np.concatenate([start + np.abs(key).argmax(1) for start, key in zip(starts, keys, strict=True)])


def cloud_view(link: FaceMixLink, images_uint8: np.ndarray,
               classify: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """For all ``images_uint8`` in batches of BATCH: the mixtures the cloud receives that a real image (not a
    decoy) dominates, the index of that image, the labels the edge ends with (``classify``: the cloud part and
    the head run only then), and the bytes sent."""
    mixtures, dominant, labels, sent = [], [], [], 0
    for start in range(0, len(images_uint8), BATCH):
        batch = images_uint8[start : start + BATCH]
        received, keys, size = link.mixtures(batch)
        owner = dominant_originals(keys)
        mixtures.append(received[owner < len(batch)])
        dominant.append(start + owner[owner < len(batch)])
        if classify:
            labels.append(link.labels(received, keys, len(batch)))
        sent += size
    return np.concatenate(mixtures), np.concatenate(dominant), np.concatenate(labels) if classify else None, sent


def edge_ms_per_image(link: FaceMixLink, images_uint8: np.ndarray, repeats: int = 3) -> float:
    """Median ms/image of the edge's share at batch BATCH (fewer if there are fewer images): features, mixing,
    float16 encoding, demixing, head."""
    def batch_ms(batch: np.ndarray) -> float:
        begin = time.perf_counter()
        received, keys, _ = link.mixtures(batch)
        before_cloud = time.perf_counter() - begin
        outputs = link.cloud.cloud_part(received)
        begin = time.perf_counter()
        link.edge.finish(outputs, keys, len(batch))
        return 1e3 * (before_cloud + time.perf_counter() - begin)

    return median_ms_per_image(batch_ms, images_uint8, repeats, BATCH)


def edge_gflops(pair: ModelPair) -> dict[str, float]:
    """Per image, what each protector costs the edge before the link: its model (and g_a for the neural link)."""
    image = torch.zeros(1, 3, 32, 32)
    g_a = gflops(load_compressor(pair.compressor).g_a, image)
    model = load_classifier(dict(pair.split_protectors)["facemix"])
    return {
        **{f"{name} + g_a": gflops(load_generator(path), image) + g_a
           for name, path in (("perturbation", pair.generator), *pair.other_protectors)},
        "facemix (edge part + head)": gflops(FaceMixPart(model, "edge"), image)
        + gflops(FaceMixPart(model, "head"), torch.zeros(SPLIT_PARTS["head"][3])),
    }


def attack(link: FaceMixLink, evaluation: LabelledImages, returned: np.ndarray, view: np.ndarray, dominant: np.ndarray,
           public: LabelledImages, class_means: torch.Tensor, config: InverseAttackConfig, phone_quality: int) -> dict:
    """The inverse network trained on public mixtures, scored on the evaluation images' mixtures ``view``
    (``cloud_view``: each dominated by the evaluation image ``dominant``); ``returned``: the label FaceMix
    returns for each evaluation image."""
    public_view, public_dominant, _, _ = cloud_view(link, through_phone_jpeg(public.images, phone_quality))
    public_originals = to_unit(torch.from_numpy(public.images).permute(0, 3, 1, 2))
    network, losses = train_inverse(torch.from_numpy(public_view), public_originals[public_dominant], config,
                                    "inverse attack on FaceMix mixtures", FeatureInverse(public_view.shape[1]),
                                    prepare=lambda view: view)
    images, labels = as_tensors(evaluation)
    originals, labels = to_unit(images)[dominant], labels[dominant]
    reconstructed = reconstruct(network, torch.from_numpy(view), prepare=lambda view: view)
    judges = load_judges()
    learned = torch.from_numpy(returned.astype(np.int64))[dominant]
    label_only, baseline = label_only_baseline(class_means, learned, originals, labels, judges)
    rng = torch.Generator().manual_seed(0)
    partners = same_class_partners(learned, rng)
    return {
        "inverse_attack": similarity_summary(reconstructed, originals),
        "inverse_attack_train_mse_per_epoch": losses,
        "label_only": baseline,
        "judges_on_reconstruction": {name: accuracy(judge, reconstructed, labels) for name, judge in judges.items()},
        "two_choice_inverse": two_choice_success(reconstructed, originals, originals[partners]),
        "rank1_of_1000_inverse": rank1_reidentification(reconstructed, originals, labels, public_originals,
                                                       torch.from_numpy(public.labels.astype(np.int64)), generator=rng),
        "_grid": {title: rows[:GRID_IMAGES].clone()  # a copy: a slice would keep (and pickle) all the rows
                  for title, rows in (("dominant original", originals), ("inverse attack", reconstructed),
                                      ("label-only baseline", label_only))},
    }


def training_recipe(checkpoint: Path) -> dict:
    """The classifier settings ``checkpoint`` was trained with: its record's, defaults filled in, an initialisation
    named by its file."""
    config = {**asdict(ClassifierConfig()), **json.loads(record_path(checkpoint).read_text())["config"]}
    if isinstance(config.get("init"), dict):  # a fine-tuning run records where its weights came from in full
        config["init"] = config["init"]["file"]
    return config


def reference_accuracy(reference: Path, facemix_recipe: dict, received_uint8: np.ndarray, labels: np.ndarray) -> dict:
    """The network trained without mixing, on the same S1 images, and the settings (model aside) in which its
    training differs from FaceMix's."""
    theirs = training_recipe(reference)
    images, truth = torch.from_numpy(received_uint8).permute(0, 3, 1, 2), torch.from_numpy(labels.astype(np.int64))
    return {"checkpoint": reference.name, "sha256": sha256_file(reference), "model": theirs["model"],
            "epochs": theirs["epochs"], "accuracy": clean_accuracy(load_classifier(reference), images, truth)["accuracy"],
            "recipe_differences": {name: [facemix_recipe.get(name), theirs.get(name)]
                                   for name in sorted((facemix_recipe.keys() | theirs.keys()) - {"model"})
                                   if facemix_recipe.get(name) != theirs.get(name)}}


def measure_facemix(data: Path, limit: int | None, attacker_images: int, phone_quality: int = PHONE_JPEG_QUALITY,
                    pair: ModelPair = DEFAULT_PAIR, seed: int = 0, reference: Path | None = None,
                    inverse: InverseAttackConfig | None = None) -> dict:
    """Accuracy, bytes, edge cost and the attacks, on ``data``'s evaluation images; ``reference``: the same network
    trained without mixing (default: the pair's target); ``inverse``: the attack's training (default: its own)."""
    evaluation = load_evaluation(data)
    if limit:
        evaluation = evaluation.subset(slice(0, limit))
    link = FaceMixLink(ModelBundle.open(pair.onnx_models), seed)
    received = through_phone_jpeg(evaluation.images, phone_quality)
    recipe = training_recipe(dict(pair.split_protectors)["facemix"])
    view, dominant, returned, sent = cloud_view(link, received, classify=True)  # one mixing pass for all numbers
    lone = link.mixtures(received[:1])[2]  # one image alone: its group is filled up with decoys
    results = {
        "pair": pair.name, "target": pair.target.stem,  # the table FaceMix (its own split FastNet) is compared in
        "evaluation_images": len(evaluation), "attacker_images": attacker_images, "cpu": cpu_model(),
        "phone_quality": phone_quality,
        "accuracy": 100.0 * float((returned == evaluation.labels).mean()),
        "epochs": recipe["epochs"], "training_hours": lineage_hours(
            dict(pair.split_protectors)["facemix"], frozenset({sha256_file(reference or pair.target)})),
        "without_mixing": reference_accuracy(reference or pair.target, recipe, received, evaluation.labels),
        "bytes_per_image": {"batch of 256": sent / len(evaluation), "one image": float(lone)},
        "edge_ms_per_image": edge_ms_per_image(link, received[: 4 * BATCH]),
        "edge_gflops_per_image": edge_gflops(pair),
    }
    if attacker_images:
        public_all = load_split(data, "train")
        public = public_all.subset(np.random.default_rng(seed).permutation(len(public_all))[:attacker_images])
        class_means = class_mean_images(*as_tensors(public_all))
        results["attacks"] = attack(link, evaluation, returned, view, dominant, public, class_means,
                                    inverse or InverseAttackConfig(), phone_quality)
    return results


def without_mixing_row(results: dict) -> list[str]:
    """The report's row for the network trained without mixing, beside FaceMix's accuracy."""
    reference = results["without_mixing"]
    differences = ", ".join(f"{name} {mixing} vs {plain}" for name, (mixing, plain) in reference["recipe_differences"].items())
    return [f"the same network without mixing ({reference['model']}, `{reference['checkpoint']}` sha256 "
            f"{reference['sha256'][:12]}…; epochs: FaceMix {results['epochs']}, it {reference['epochs']}; "
            f"{'recipe otherwise the same' if not differences else 'recipe differs (FaceMix vs it): ' + differences})",
            f"{reference['accuracy']:.2f}% (FaceMix {results['accuracy'] - reference['accuracy']:+.2f} points)"]


def render_facemix(results: dict) -> str:
    """FaceMix's section of the report: one table of its numbers beside the label-only baseline."""
    rows = [["accuracy (edge's labels)", f"{results['accuracy']:.2f}%"],
            *([without_mixing_row(results)] if "without_mixing" in results else []),
            *[[f"bytes/image on the wire, {name}", f"{size:,.0f}"] for name, size in results["bytes_per_image"].items()],
            [f"edge ms/image (batch {BATCH}, {results['cpu']})", f"{results['edge_ms_per_image']:.3f}"],
            *[[f"edge GFLOPs/image: {name}", f"{value:.4f}"] for name, value in results["edge_gflops_per_image"].items()]]
    if "attacks" in results:
        attacks, baseline = results["attacks"], results["attacks"]["label_only"]
        rows += [
            ["inverse attack SSIM / PSNR dB (label-only baseline)",
             f"{attacks['inverse_attack']['ssim']:.3f} / {attacks['inverse_attack']['psnr_db']:.2f} "
             f"({baseline['ssim']:.3f} / {baseline['psnr_db']:.2f})"],
            *[[f"judge {name} on the reconstructions (label-only baseline)",
               f"{value:.1f}% ({baseline['judges'][name]:.1f}%)"] for name, value in attacks["judges_on_reconstruction"].items()],
            ["two-choice linkability (inverse)", f"{attacks['two_choice_inverse']:.1f}%"],
            ["rank-1 of 1,000 (inverse)", f"{attacks['rank1_of_1000_inverse']:.1f}%"],
        ]
    lines = ["| | FaceMix |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows]]
    return "\n\n".join([
        "## FaceMix",
        f"FaceMix's split FastNet (encryption-aware training) on {results['evaluation_images']} evaluation images "
        f"after the phone's JPEG (q{results['phone_quality']}): the edge runs the stem and the first conv group, mixes "
        "each group of four images' features with a fresh random orthogonal key, sends the mixtures as float16, and "
        "demixes the cloud part's float16 outputs before its own head; the cloud never learns a label. The attacker "
        "trains an inverse network on mixtures of public images (keys known to it there) and reconstructs the original "
        "that dominates each evaluation mixture; the label-only baseline is the class-mean image of the label FaceMix "
        "returns for that original (what a scheme leaking its answer would allow), and two-choice partners share that "
        "label. Edge GFLOPs (2 per multiply-add) put FaceMix's edge share beside the image protectors' with g_a. "
        "FaceMix's paper claims a small accuracy cost against the same network trained without mixing; that network "
        "is measured on the same S1 images.",
        "\n".join(lines),
        "![FaceMix attack grid](facemix_attack_grid.png)" if "attacks" in results else "",
    ])


def write_facemix(results: dict, out: Path) -> None:
    """facemix.json, facemix.md and the attack grid under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    grid = results.get("attacks", {}).pop("_grid", None)
    if grid:
        plots.image_grid({title: (rows.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
                          for title, rows in grid.items()}, out / "facemix_attack_grid.png")
    (out / "facemix.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "facemix.md").write_text(render_facemix(results) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="CIFAR-10 folder (the attacker's public images too)")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N evaluation images")
    parser.add_argument("--attacker-images", type=non_negative_int, default=20_000, help="public images the attack trains on (0: none)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="the same network trained without mixing, with its record beside it (default: the pair's target)")
    parser.add_argument("--out", type=Path, default=REPORTS / "evaluation")
    args = parser.parse_args()
    if args.reference is not None:
        for path, what in ((args.reference, "checkpoint"), (record_path(args.reference), "training record")):
            if not path.is_file():
                parser.error(f"--reference: no {what} at {path}")
    results = {"command": " ".join(["python -m pmc2.evaluation.facemix", *sys.argv[1:]]), "git_commit": git_commit(),
               **measure_facemix(args.data, args.limit, args.attacker_images, reference=args.reference)}
    write_facemix(results, args.out)
    print(render_facemix(results))


if __name__ == "__main__":
    main()

"""Independent judges: classifiers trained on clean CIFAR-10 with cutout, never used to train a generator
or a compressor. If they recognise what the cloud receives (or an attack's reconstruction of it) better
than they recognise the label-only baseline image, the view leaks the picture beyond its label.

A view the cloud may legitimately see can still carry the label well enough for a judge to read it (ten
fixed class-code images do). ``bits_beyond_label`` therefore also asks what a judge's reading adds to the
label the cloud returns: the conditional mutual information I(judge; true label | cloud label), with the
same statistic under within-label shuffles as its chance level (plug-in estimates are biased upwards).

``masked_accuracy`` also hides each fixed 10×10 region in turn and keeps the best accuracy, which catches a
perturbation that fools a model with a patch in one place while the rest of the picture stays readable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.stats import entropy

from pmc2.training.classifiers import load_classifier
from pmc2.training.data import normalize
from pmc2.runtime.paths import CHECKPOINTS

JUDGES = CHECKPOINTS / "judges"
MASK_SIZE = 10
MASK_STRIDE = 11  # a 3×3 grid of 10×10 regions covering the 32×32 image, corners included
SHUFFLES = 200


def load_judges(folder: Path = JUDGES) -> dict[str, torch.nn.Module]:
    judges = {record.name.removesuffix(".record.json"): load_classifier(record.with_name(record.name.replace(".record.json", ".pt")))
              for record in sorted(folder.glob("*.record.json"))}
    if len(judges) < 2:
        raise FileNotFoundError(f"need at least two judges in {folder}; train them with training/train_classifier.py "
                                "--cutout 12 --out checkpoints/judges (see the README)")
    return judges


@torch.inference_mode()
def predictions(model: torch.nn.Module, images_unit: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """The labels ``model`` gives [0, 1] NCHW images."""
    return torch.cat([model(normalize(images_unit[s : s + chunk])).argmax(1) for s in range(0, len(images_unit), chunk)])


def accuracy(model: torch.nn.Module, images_unit: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy (%) on [0, 1] NCHW images."""
    return 100.0 * float((predictions(model, images_unit) == labels).float().mean())


def masked_accuracy(model: torch.nn.Module, images_unit: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy with each fixed MASK_SIZE² region set to mid-grey: the best region and its accuracy."""
    size = images_unit.shape[-1]
    results = {}
    for top in range(0, size - MASK_SIZE + 1, MASK_STRIDE):
        for left in range(0, size - MASK_SIZE + 1, MASK_STRIDE):
            masked = images_unit.clone()
            masked[:, :, top : top + MASK_SIZE, left : left + MASK_SIZE] = 0.5
            results[(top, left)] = accuracy(model, masked, labels)
    (top, left), best = max(results.items(), key=lambda item: item[1])
    return {"best_accuracy": best, "best_region_top_left": [top, left]}


def _joint_entropy_bits(*columns: np.ndarray) -> float:
    _, counts = np.unique(np.stack(columns, axis=1), axis=0, return_counts=True)
    return float(entropy(counts, base=2))


def conditional_information_bits(reading: np.ndarray, truth: np.ndarray, given: np.ndarray) -> float:
    """Plug-in I(reading; truth | given) in bits: H(R,G) + H(T,G) − H(R,T,G) − H(G), rounded to 1e-9 so
    that float error does not make an exact zero look positive."""
    bits = (_joint_entropy_bits(reading, given) + _joint_entropy_bits(truth, given)
            - _joint_entropy_bits(reading, truth, given) - _joint_entropy_bits(given))
    return round(bits, 9)


def bits_beyond_label(reading: torch.Tensor, truth: torch.Tensor, cloud_label: torch.Tensor, seed: int = 0) -> dict:
    """What a judge's readings tell about the true labels beyond the cloud's labels, and its chance level
    (95th percentile of the statistic with the readings shuffled among images of the same cloud label)."""
    reading, truth, cloud_label = (t.numpy() for t in (reading, truth, cloud_label))
    rng = np.random.default_rng(seed)
    shuffled = reading.copy()
    null = []
    for _ in range(SHUFFLES):
        for label in np.unique(cloud_label):
            members = np.flatnonzero(cloud_label == label)
            shuffled[members] = reading[rng.permutation(members)]
        null.append(conditional_information_bits(shuffled, truth, cloud_label))
    return {"bits": conditional_information_bits(reading, truth, cloud_label),
            "chance_bits_p95": float(np.percentile(null, 95)),
            "label_uncertainty_bits": _joint_entropy_bits(truth, cloud_label) - _joint_entropy_bits(cloud_label)}

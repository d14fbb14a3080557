"""Independent judges: classifiers trained on clean CIFAR-10 with cutout, never used to train a generator
or a compressor. If they recognise what the cloud receives (or an attack's reconstruction of it) better
than they recognise the label-only baseline image, the view leaks the picture beyond its label.

``masked_accuracy`` also hides each fixed 10×10 region in turn and keeps the best accuracy, which catches a
perturbation that fools a model with a patch in one place while the rest of the picture stays readable.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pmc2.export.classifiers import load_classifier
from pmc2.export.data import normalize
from pmc2.runtime.paths import CHECKPOINTS

JUDGES = CHECKPOINTS / "judges"
MASK_SIZE = 10
MASK_STRIDE = 11  # a 3×3 grid of 10×10 regions covering the 32×32 image, corners included


def load_judges(folder: Path = JUDGES) -> dict[str, torch.nn.Module]:
    judges = {record.name.removesuffix(".record.json"): load_classifier(record.with_name(record.name.replace(".record.json", ".pt")))
              for record in sorted(folder.glob("*.record.json"))}
    if len(judges) < 2:
        raise FileNotFoundError(f"need at least two judges in {folder}; train them with export/train_classifier.py "
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

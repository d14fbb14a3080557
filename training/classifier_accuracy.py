"""A trained classifier's clean accuracy on the 5,000 evaluation images, plain and with a test-time flip.

    python -m pmc2.training.classifier_accuracy checkpoints/resnet18.pt [--data ../shared/data/cifar10]

Writes ``<checkpoint>.evaluation.json`` beside the checkpoint (a test re-derives it). Plain accuracy is what a
cloud serving the checkpoint as exported gets; the flip-averaged figure (logits of the image and its mirror
image, summed) is what a provider could get by serving the two passes, and is reported for comparison only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.paths import SHARED_DATA
from pmc2.training.classifiers import load_classifier
from pmc2.training.data import as_tensors, normalize, to_unit

BATCH = 500


@torch.inference_mode()
def clean_accuracy(model: torch.nn.Module, images_uint8: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 accuracy (%) of ``model`` on uint8 NCHW images, plain and flip-averaged."""
    plain = flipped = 0
    for start in range(0, len(images_uint8), BATCH):
        batch = normalize(to_unit(images_uint8[start : start + BATCH]))
        logits = model(batch)
        truth = labels[start : start + BATCH]
        plain += int((logits.argmax(1) == truth).sum())
        flipped += int(((logits + model(batch.flip(3))).argmax(1) == truth).sum())
    return {"accuracy": 100.0 * plain / len(labels), "flip_accuracy": 100.0 * flipped / len(labels)}


def evaluation_record_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".evaluation.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="CIFAR-10 folder (npz or cifar-10-batches-py)")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        parser.error(f"no checkpoint at {args.checkpoint}")
    evaluation = load_evaluation(args.data)
    images, labels = as_tensors(evaluation)
    record = {"command": " ".join(["python -m pmc2.training.classifier_accuracy", *sys.argv[1:]]),
              "images": len(labels), "data_sha256": evaluation.sha256(),
              **clean_accuracy(load_classifier(args.checkpoint), images, labels)}
    evaluation_record_path(args.checkpoint).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

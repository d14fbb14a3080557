"""The label-only baseline: what an attacker who learns a label, and nothing else, can reconstruct.

    label the attacker learns (the cloud's answer) ──class means of the public images──▶ guess ──▶ PSNR / SSIM,
                                                                                                  judges

Its best guess under MSE is the class-mean image of that label. The label is the one the system returns
for the image (the cloud's prediction, wrong for some images), never the true label, which no attacker sees.
"""

from __future__ import annotations

import torch

from pmc2.evaluation.image_similarity import similarity_summary
from pmc2.evaluation.judges import accuracy


def label_only_baseline(class_means: torch.Tensor, learned_labels: torch.Tensor, originals: torch.Tensor,
                        true_labels: torch.Tensor, judges: dict[str, torch.nn.Module]) -> tuple[torch.Tensor, dict]:
    """The class-mean image of each learned label, and its scores: PSNR / SSIM against the [0, 1] originals,
    and each judge's accuracy on it against the true labels."""
    guesses = class_means[learned_labels]
    scores = {**similarity_summary(guesses, originals),
              "judges": {name: accuracy(judge, guesses, true_labels) for name, judge in judges.items()}}
    return guesses, scores

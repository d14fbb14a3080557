"""Code images the target itself reads, found by asking it for labels only.

The codebook's images are shaped against a teacher. When the teacher is not the target (black-box access:
the edge classifier fitted to the target's answers), the shaping drives the images far from natural
pictures, where the two disagree, and the target reads them at chance. For each entry the target misreads:

    public image the target answered k ──HopSkipJump (decision-based, foolbox)──▶ the point of the target's
    region for k nearest to the entry's image ──``depth`` of the way back toward the public image──▶ goal k

then g_s is fitted to decode every entry to its goal (the others to what they decode to now), and the target
is asked again. HopSkipJump sees nothing but the labels the access returns, each image a counted query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import foolbox
import numpy as np
import torch
from torch import nn

from pmc2.runtime.normalization import to_uint8_nhwc

Labeler = Callable[[np.ndarray], np.ndarray]  # uint8 [N,H,W,3] -> the target's labels [N]


@dataclass(frozen=True)
class Steering:
    """How misread code images are steered into the target's regions (the fit's ``codebook`` settings)."""

    rounds: int = 4  # steer, refit g_s and ask again, while the target misreads an entry
    attack_steps: int = 10  # HopSkipJump's iterations per entry
    initial_evaluations: int = 50  # its boundary-gradient estimate's queries, at first
    max_evaluations: int = 400  # and at most
    depth: float = 0.05  # how far back toward the public image the goal lies, in the first round
    decoder_steps: int = 1500  # Adam steps fitting g_s to the goals

    def depth_in(self, steering_round: int) -> float:
        """``depth``, doubled each round, up to the public image itself (1)."""
        return min(1.0, self.depth * 2**steering_round)


class LabelsAsScores(nn.Module):
    """The target as a model foolbox can attack: [0, 1] NCHW images in, one-hot rows of its labels out (of the
    images as uint8, what the access takes)."""

    def __init__(self, labels: Labeler, classes: int) -> None:
        super().__init__()
        self.labels, self.classes = labels, classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        answered = self.labels(to_uint8_nhwc(images.detach().numpy()))
        return nn.functional.one_hot(torch.from_numpy(np.asarray(answered)).long(), self.classes).float()


def nearest_of_class(candidates: torch.Tensor, candidate_labels: torch.Tensor, images: torch.Tensor,
                     classes: torch.Tensor) -> torch.Tensor:
    """For each image, the candidate with its class (as the target labelled it) nearest in L2."""
    picked = []
    for image, k in zip(images, classes):
        of_class = candidates[candidate_labels == k]
        if not len(of_class):
            raise RuntimeError(f"the target labelled no public image {int(k)}: nothing to steer that entry toward")
        picked.append(of_class[(of_class - image).flatten(1).pow(2).sum(1).argmin()])
    return torch.stack(picked)


def steer_into_classes(labels: Labeler, images: torch.Tensor, classes: torch.Tensor, starts: torch.Tensor,
                       config: Steering, depth: float, class_count: int) -> torch.Tensor:
    """Goals near ``images`` ([0, 1] NCHW) that the target reads as ``classes``: HopSkipJump from ``starts``
    (images it reads so), then ``depth`` of the way back toward them."""
    model = foolbox.PyTorchModel(LabelsAsScores(labels, class_count).eval(), bounds=(0, 1))
    attack = foolbox.attacks.HopSkipJumpAttack(steps=config.attack_steps,
                                               initial_gradient_eval_steps=config.initial_evaluations,
                                               max_gradient_eval_steps=config.max_evaluations)
    found, _, _ = attack(model, images, foolbox.criteria.TargetedMisclassification(classes), starting_points=starts,
                         epsilons=None)
    return (found + depth * (starts - found)).clamp(0, 1)

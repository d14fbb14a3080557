"""Code images the target itself reads, found by asking it for labels only.

The codebook's images are shaped against a teacher. When the teacher is not the target (black-box access:
the edge classifier fitted to the target's answers), the shaping drives the images far from natural
pictures, where the two disagree, and the target reads them at chance. For each entry the target misreads:

    public image the target answered k ──HopSkipJump (decision-based, foolbox)──▶ the point of the target's
    region for k nearest to the entry's image ──``depth`` of the way back toward the public image──▶ goal k

then g_s is fitted to decode every entry to its goal (the others to what they decode to now), and the target
is asked again. HopSkipJump sees nothing but the labels the access returns, each image a counted query. It
starts from public images the aux model does not read as their class (all of a class's, where it reads every
one), so that the goals it finds, which lie between such an image and the entry's, tell a classifier of natural
images as little as possible. The depth doubles each round; once it reaches 1 the goal is the public image itself,
and the round asks nothing but whether the target now reads the entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import foolbox
import numpy as np
import torch
from compressai.models import FactorizedPrior
from torch import nn

from pmc2.runtime.normalization import to_uint8_nhwc, to_unit_nchw
from pmc2.training.latent_codebook import decoded_entries, fit_decoded_entries

Labeler = Callable[[np.ndarray], np.ndarray]  # uint8 [N,H,W,3] -> the target's labels [N]


@dataclass(frozen=True)
class Steering:
    """How misread code images are steered into the target's regions (the fit's ``codebook`` settings)."""

    rounds: int = 6  # steer, refit g_s and ask again, while the target misreads an entry
    attack_steps: int = 10  # HopSkipJump's iterations per entry
    initial_evaluations: int = 50  # its boundary-gradient estimate's queries, at first
    max_evaluations: int = 400  # and at most
    depth: float = 0.25  # how far back toward the public image the goal lies, in the first round: a margin
    # inside the target's region that g_s's fitting error (tens of uint8 levels at worst) does not cross
    decoder_steps: int = 3000  # Adam steps fitting g_s to the goals

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


@dataclass(frozen=True)
class StartingPool:
    """Public images ([0, 1] NCHW) HopSkipJump may start from, each with the class the target answered for it."""

    images: torch.Tensor
    classes: torch.Tensor

    @classmethod
    def unread_by_aux(cls, images: torch.Tensor, answered: torch.Tensor, aux_labels: torch.Tensor) -> StartingPool:
        """Of each class, the images the target answered so that the aux model reads otherwise; all of them
        where the aux model reads every one."""
        keep = answered != aux_labels
        for k in answered.unique():
            of_class = answered == k
            if not keep[of_class].any():
                keep |= of_class
        return cls(images[keep], answered[keep])

    def nearest_of_class(self, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """For each image, the pool's image of its class nearest in L2."""
        picked = []
        for image, k in zip(images, classes):
            of_class = self.images[self.classes == k]
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


def steer_codebook(labels: Labeler, compressor: FactorizedPrior, symbols: torch.Tensor, pool: StartingPool,
                   config: Steering, after_round: Callable[[], None] = lambda: None) -> tuple[list[dict], list[list[bool]]]:
    """Steer the entries the target misreads, refit g_s (in place) and ask again, for up to ``config.rounds``
    rounds: each round's record, and whether the target read each entry before the first and after each."""
    classes = torch.arange(len(symbols))

    def reads() -> list[bool]:
        return (labels(decoded_entries(compressor, symbols)) == classes.numpy()).tolist()

    read_per_round, rounds = [reads()], []
    for steering_round in range(config.rounds):
        if all(read_per_round[-1]):
            break
        goals = torch.from_numpy(to_unit_nchw(decoded_entries(compressor, symbols)))
        misread = classes[~torch.tensor(read_per_round[-1])]
        starts = pool.nearest_of_class(goals[misread], misread)
        depth = config.depth_in(steering_round)
        steered = (starts if depth >= 1  # the public images themselves: nothing to ask
                   else steer_into_classes(labels, goals[misread], misread, starts, config, depth, len(symbols)))
        rounds.append({"entries": misread.tolist(), "depth": depth,
                       "l2_start": (starts - goals[misread]).flatten(1).norm(dim=1).tolist(),
                       "l2_moved": (steered - goals[misread]).flatten(1).norm(dim=1).tolist()})
        goals[misread] = steered
        rounds[-1]["g_s_error_uint8_levels"] = fit_decoded_entries(compressor, symbols, goals, config.decoder_steps)
        read_per_round.append(reads())
        after_round()
    return rounds, read_per_round

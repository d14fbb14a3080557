"""Steering code images into the target's classes by its labels alone (HopSkipJump), then fitting g_s to them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pmc2.fit.code_steering import Steering, nearest_of_class, steer_into_classes
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.runtime.paths import CHECKPOINTS
from pmc2.training.classifiers import load_classifier
from pmc2.training.compressor import load_compressor
from pmc2.training.data import normalize
from pmc2.training.latent_codebook import decoded_entries, fit_decoded_entries
from tests.test_latent_codebook import _compressor_with_codebook

SMALL = Steering(rounds=6, attack_steps=3, initial_evaluations=20, max_evaluations=60)


class CountingTarget:
    """The shipped FastNet target behind a labels-only door that counts the images it is asked about."""

    def __init__(self) -> None:
        self.model, self.asked = load_classifier(CHECKPOINTS / "fastnet.pt"), 0

    def __call__(self, images_uint8: np.ndarray) -> np.ndarray:
        self.asked += len(images_uint8)
        with torch.inference_mode():
            return self.model(normalize(torch.from_numpy(to_unit_nchw(images_uint8)))).argmax(1).numpy()


def test_misread_entries_are_steered_until_the_target_reads_every_one(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path, symbols = _compressor_with_codebook(tmp_path)
    compressor, target = load_compressor(path, with_codebook=False), CountingTarget()
    public = load_evaluation(None).subset(slice(0, 200)).images
    candidates = torch.from_numpy(to_unit_nchw(public))
    answered = torch.from_numpy(target(public)).long()
    classes = torch.arange(len(symbols))
    reads = [target(decoded_entries(compressor, symbols)) == classes.numpy()]
    assert not reads[0].all()  # an untrained g_s: the target reads its images as few classes
    for steering_round in range(SMALL.rounds):
        goals = torch.from_numpy(to_unit_nchw(decoded_entries(compressor, symbols)))
        misread = classes[~torch.from_numpy(reads[-1])]
        starts = nearest_of_class(candidates, answered, goals[misread], misread)
        asked = target.asked
        steered = steer_into_classes(target, goals[misread], misread, starts, SMALL, SMALL.depth_in(steering_round), 10)
        assert target.asked > asked + len(misread)  # the attack asked the target, label by label
        assert ((steered - goals[misread]).flatten(1).norm(dim=1) <= (starts - goals[misread]).flatten(1).norm(dim=1)).all()
        goals[misread] = steered
        assert fit_decoded_entries(compressor, symbols, goals, SMALL.decoder_steps) < 32  # uint8 levels, at most
        reads.append(target(decoded_entries(compressor, symbols)) == classes.numpy())
        if reads[-1].all():
            break
    assert reads[-1].all(), reads

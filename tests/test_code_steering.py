"""Steering code images into the target's classes by its labels alone (HopSkipJump), then fitting g_s to them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pmc2.fit.code_steering import StartingPool, Steering, steer_codebook
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.runtime.paths import CHECKPOINTS
from pmc2.training.classifiers import load_classifier
from pmc2.training.compressor import load_compressor
from pmc2.training.data import normalize
from tests.test_latent_codebook import _compressor_with_codebook

SMALL = Steering(rounds=6, attack_steps=3, initial_evaluations=20, max_evaluations=60, depth=0.05, decoder_steps=1500)


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
    answered = torch.from_numpy(target(public)).long()
    pool = StartingPool(torch.from_numpy(to_unit_nchw(public)), answered)
    asked_per_round = []
    rounds, reads = steer_codebook(target, compressor, symbols, pool, SMALL,
                                   after_round=lambda: asked_per_round.append(target.asked))
    assert not all(reads[0])  # an untrained g_s: the target reads its images as few classes
    assert all(reads[-1]), reads
    assert len(rounds) == len(reads) - 1 == len(asked_per_round) <= SMALL.rounds
    for steering_round, asked_before, asked_after, read_before in zip(rounds, [len(public) + len(symbols), *asked_per_round],
                                                                      asked_per_round, reads):
        assert steering_round["entries"] == [k for k, read in enumerate(read_before) if not read]
        if steering_round["depth"] < 1:  # the attack asked the target, label by label, beyond the entries' reading
            assert asked_after > asked_before + len(steering_round["entries"]) + len(symbols)
        else:  # the goals are the public images themselves: only the reading is asked
            assert asked_after == asked_before + len(symbols)
        assert all(moved <= start for moved, start in zip(steering_round["l2_moved"], steering_round["l2_start"]))
        assert steering_round["g_s_error_uint8_levels"] < 32


def test_the_pool_keeps_of_each_class_what_the_aux_model_misreads() -> None:
    images = torch.arange(6.0).view(6, 1, 1, 1)
    answered = torch.tensor([0, 0, 0, 1, 1, 2])
    aux_labels = torch.tensor([0, 2, 0, 1, 1, 0])
    pool = StartingPool.unread_by_aux(images, answered, aux_labels)
    assert pool.images.flatten().tolist() == [1.0, 3.0, 4.0, 5.0]  # class 1: the aux reads every one, all kept
    assert pool.classes.tolist() == [0, 1, 1, 2]
    assert pool.nearest_of_class(torch.tensor([3.6, 0.0]).view(2, 1, 1, 1), torch.tensor([1, 0])).flatten().tolist() == [4.0, 1.0]

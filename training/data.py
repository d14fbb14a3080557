"""CIFAR-10 as torch tensors: the MMSys'22 split, batching and augmentation.

    uint8 HWC (runtime.cifar10) -> uint8 NCHW tensor -> augment -> normalised float
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from pmc2.runtime.cifar10 import SAMPLE_FILE, SPLIT_FILE, LabelledImages, load_split, load_validation
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY, through_phone_jpeg
from pmc2.runtime.paths import SHARED_DATA
from pmc2.runtime.normalization import CIFAR10_MEAN, CIFAR10_STD

SAMPLE_SIZE = 500
_MEAN = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)


def mmsys22_test_split() -> dict[str, list[int]]:
    """Split the 10,000 test indices 5,000/5,000 with ``random_split`` seeded 0 (evaluation first)."""
    evaluation, validation = torch.utils.data.random_split(
        range(10_000), [5_000, 5_000], generator=torch.Generator().manual_seed(0)
    )
    return {"evaluation": list(evaluation.indices), "validation": list(validation.indices)}


def as_tensors(data: LabelledImages) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 NCHW images and int64 labels."""
    images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2)))
    return images, torch.from_numpy(data.labels.astype(np.int64))


def as_received_tensors(data: LabelledImages,
                        phone_quality: int | None = PHONE_JPEG_QUALITY) -> tuple[torch.Tensor, torch.Tensor]:
    """``as_tensors`` of the images as the edge receives them: after the phone's JPEG (``None``: as stored)."""
    if phone_quality is None:
        return as_tensors(data)
    return as_tensors(LabelledImages(through_phone_jpeg(data.images, phone_quality), data.labels))


def to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float().div_(255.0)


def normalize(images_unit: torch.Tensor) -> torch.Tensor:
    return (images_unit - _MEAN.to(images_unit.device)) / _STD.to(images_unit.device)


def denormalize(images_normalized: torch.Tensor) -> torch.Tensor:
    return images_normalized * _STD.to(images_normalized.device) + _MEAN.to(images_normalized.device)


def flip_and_translate(images: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random horizontal flip and random translation by up to ``max_shift`` pixels (reflect padding)."""
    n, _, h, w = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip.view(n, 1, 1, 1), images.flip(3), images)
    if max_shift == 0:
        return images
    padded = torch.nn.functional.pad(images.float(), [max_shift] * 4, mode="reflect").to(images.dtype)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w)
    return padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(3).view(1, 3, 1, 1), rows, cols]


def erase_squares(images: torch.Tensor, size: int, generator: torch.Generator | None = None,
                  fill: float = 0.0) -> torch.Tensor:
    """Each image with one random ``size``×``size`` square set to ``fill`` (cutout / random erasing)."""
    n, _, h, w = images.shape
    top = torch.randint(0, h - size + 1, (n, 1, 1, 1), generator=generator)
    left = torch.randint(0, w - size + 1, (n, 1, 1, 1), generator=generator)
    rows, cols = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
    square = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return torch.where(square, torch.full_like(images, fill), images)


def class_mean_images(images_uint8: torch.Tensor, labels: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """[classes, 3, H, W] mean [0, 1] image of each class: the label-only attacker's best guess under MSE."""
    unit = to_unit(images_uint8)
    return torch.stack([unit[labels == label].mean(0) for label in range(classes)])


def batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    augment: bool = False,
    max_shift: int = 2,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (normalised float images, labels); shuffled when a generator is given, flipped and translated
    by up to ``max_shift`` pixels when ``augment``."""
    order = torch.randperm(len(images), generator=generator) if generator is not None else torch.arange(len(images))
    for start in range(0, len(images), batch_size):
        index = order[start : start + batch_size]
        batch = images[index]
        if augment:
            batch = flip_and_translate(batch, generator, max_shift)
        yield normalize(to_unit(batch)), labels[index]


def seeded_training_data(data: Path, seed: int, limit: int | None) -> tuple[LabelledImages, LabelledImages]:
    """Seed torch, then the training split and the validation images (the first ``limit`` of each)."""
    torch.manual_seed(seed)
    train_set, validation = load_split(data, "train"), load_validation(data)
    if limit:
        train_set, validation = train_set.subset(slice(0, limit)), validation.subset(slice(0, limit))
    return train_set, validation


def write_bundled_data(data: Path) -> None:
    """Write the split indices and the first ``SAMPLE_SIZE`` evaluation images into ``data/``."""
    split = mmsys22_test_split()
    SPLIT_FILE.write_text(json.dumps({"seed": 0, "method": "torch.utils.data.random_split", **split}) + "\n")
    sample_indices = np.asarray(split["evaluation"][:SAMPLE_SIZE])
    sample = load_split(data, "test").subset(sample_indices)
    np.savez_compressed(SAMPLE_FILE, x=sample.images, y=sample.labels, test_index=sample_indices)


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the bundled split file and evaluation sample.")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="CIFAR-10 folder (npz or batches-py)")
    write_bundled_data(parser.parse_args().data)


if __name__ == "__main__":
    main()

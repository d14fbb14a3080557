"""CIFAR-10 readers (numpy only) and the fixed evaluation/validation split.

Sources understood:
  * the npz layout of ``../shared/data/cifar10`` (``x`` uint8 [N,32,32,3], ``y`` uint8 [N]);
  * the ``cifar-10-batches-py`` folder that torchvision downloads;
  * the small labelled evaluation sample bundled in ``data/``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pmc2.runtime.paths import BUNDLED_DATA

SAMPLE_FILE = BUNDLED_DATA / "cifar10_eval_sample.npz"
SPLIT_FILE = BUNDLED_DATA / "cifar10_test_split.json"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class LabelledImages:
    """uint8 images [N,32,32,3] (HWC, RGB) with uint8 labels [N]."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[1:] != (32, 32, 3):
            raise ValueError(f"images must be uint8 [N,32,32,3], got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels shape {self.labels.shape} does not match {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> "LabelledImages":
        return LabelledImages(self.images[indices], self.labels[indices])

    def sha256(self) -> str:
        """Content hash of pixels and labels (independent of file compression)."""
        digest = hashlib.sha256(self.images.tobytes())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()


def load_npz(path: Path) -> LabelledImages:
    with np.load(path) as archive:
        return LabelledImages(archive["x"], archive["y"].astype(np.uint8))


def load_batches_py(folder: Path, split: str) -> LabelledImages:
    """Read the python-pickle batches of the official CIFAR-10 archive."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[b"labels"], dtype=np.uint8))
    return LabelledImages(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels))


def load_split(data: Path, split: str) -> LabelledImages:
    """Load ``train`` or ``test`` from a folder holding ``{split}.npz`` or ``cifar-10-batches-py``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data = Path(data)
    if (data / f"{split}.npz").is_file():
        return load_npz(data / f"{split}.npz")
    for folder in (data, data / "cifar-10-batches-py"):
        if (folder / "test_batch").is_file():
            return load_batches_py(folder, split)
    raise FileNotFoundError(f"no CIFAR-10 {split} data in {data} (expected {split}.npz or cifar-10-batches-py/)")


def load_test_split_indices() -> dict[str, np.ndarray]:
    """The MMSys'22 split of the 10,000 test images: ``evaluation`` and ``validation`` indices."""
    with open(SPLIT_FILE) as handle:
        split = json.load(handle)
    return {name: np.asarray(split[name], dtype=np.int64) for name in ("evaluation", "validation")}


def load_evaluation(data: Path | None) -> LabelledImages:
    """The 5,000 evaluation images from ``data``, or the bundled sample when ``data`` is None."""
    if data is None:
        return load_npz(SAMPLE_FILE)
    return load_split(data, "test").subset(load_test_split_indices()["evaluation"])


def load_validation(data: Path) -> LabelledImages:
    return load_split(data, "test").subset(load_test_split_indices()["validation"])

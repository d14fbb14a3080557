"""CIFAR-10 loaders, the MMSys'22 split and the bundled sample."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from pmc2.training.data import mmsys22_test_split
from pmc2.runtime.cifar10 import (
    SAMPLE_FILE, load_batches_py, load_evaluation, load_npz, load_split, load_test_split_indices,
)

FIRST_EVALUATION_INDICES = [6044, 2890, 9399, 1917, 4919, 1729, 429, 7532, 337, 8223]


def test_split_file_matches_random_split_seeded_zero() -> None:
    fresh = mmsys22_test_split()
    stored = load_test_split_indices()
    assert stored["evaluation"].tolist() == fresh["evaluation"]
    assert stored["validation"].tolist() == fresh["validation"]
    assert stored["evaluation"][:10].tolist() == FIRST_EVALUATION_INDICES
    assert sorted(stored["evaluation"].tolist() + stored["validation"].tolist()) == list(range(10_000))


def _write_batches_py(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write data in the pickled layout of the official cifar-10-batches-py archive."""
    folder.mkdir()
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    chunks = np.array_split(np.arange(len(images)), 5)
    for number, chunk in enumerate(chunks, start=1):
        batch = {b"data": rows[chunk], b"labels": labels[chunk].tolist()}
        (folder / f"data_batch_{number}").write_bytes(pickle.dumps(batch))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": rows[:100], b"labels": labels[:100].tolist()}))


def test_batches_py_loader_reads_the_official_layout(tmp_path: Path) -> None:
    sample = load_npz(SAMPLE_FILE)
    _write_batches_py(tmp_path / "cifar-10-batches-py", sample.images, sample.labels)
    train = load_split(tmp_path, "train")
    test = load_batches_py(tmp_path / "cifar-10-batches-py", "test")
    np.testing.assert_array_equal(train.images, sample.images)
    np.testing.assert_array_equal(train.labels, sample.labels)
    np.testing.assert_array_equal(test.images, sample.images[:100])


def test_npz_loader_reads_shared_data(shared_cifar: Path) -> None:
    test = load_split(shared_cifar, "test")
    assert test.images.shape == (10_000, 32, 32, 3) and test.images.dtype == np.uint8
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert np.bincount(test.labels).tolist() == [1000] * 10


def test_bundled_sample_is_the_first_evaluation_images(shared_cifar: Path) -> None:
    sample = load_evaluation(None)
    full = load_evaluation(shared_cifar)
    assert len(full) == 5_000 and len(sample) == 500
    np.testing.assert_array_equal(sample.images, full.images[:500])
    np.testing.assert_array_equal(sample.labels, full.labels[:500])
    assert SAMPLE_FILE.stat().st_size <= 2 * 1024 * 1024

"""Where the simulated phone's pictures come from: the bundled sample, a CIFAR-10 npz, or a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pmc2.runtime.cifar10 import CLASSES, LabelledImages, load_evaluation, load_npz

UNKNOWN_LABEL = 255
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def load_folder(folder: Path) -> LabelledImages:
    """Every PNG/JPEG under ``folder``, resized to 32x32; a parent folder named after a class gives the label."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no .png/.jpg images under {folder}")
    images, labels = [], []
    for path in paths:
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)))
        labels.append(CLASSES.index(path.parent.name) if path.parent.name in CLASSES else UNKNOWN_LABEL)
    return LabelledImages(np.stack(images), np.asarray(labels, dtype=np.uint8))


def load_images(source: str | None) -> LabelledImages:
    """``None``/"sample": bundled 500 images; a CIFAR-10 folder: its 5,000 evaluation images;
    an ``.npz``: its x/y arrays; any other folder: the image files in it."""
    if source in (None, "sample"):
        return load_evaluation(None)
    path = Path(source)
    if path.suffix == ".npz":
        return load_npz(path)
    if (path / "test.npz").is_file() or (path / "cifar-10-batches-py").is_dir():
        return load_evaluation(path)
    return load_folder(path)

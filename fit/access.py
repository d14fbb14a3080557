"""What a fitting run may do with its target, and what a black-box target's answers cost.

    TargetAccess ─┬─ white-box (fit.white_box): a differentiable module, [0, 1] NCHW → logits, and its labels
                  └─ black-box (BlackBoxLabeler): labels only; every image the target answers is counted, and
                     answers are cached by image content, so an image is never paid for twice
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

WHITE_BOX, BLACK_BOX = "white-box", "black-box"
DIGEST_BYTES = hashlib.sha256().digest_size  # an image's key in the answer cache


class AccessUnavailable(RuntimeError):
    """This access to this target cannot be had; the message says why."""


def require_uint8_images(images_uint8: np.ndarray) -> None:
    if images_uint8.dtype != np.uint8 or images_uint8.ndim != 4 or images_uint8.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [N,H,W,3], got {images_uint8.dtype} {images_uint8.shape}")


class TargetAccess(ABC):
    """One target model and how it is reached (``via``: a checkpoint, an ONNX file, a cloud URL)."""

    kind: ClassVar[str]

    def __init__(self, via: str) -> None:
        self.via = via

    @property
    def description(self) -> str:
        return f"{self.kind} through {self.via}"

    @abstractmethod
    def labels(self, images_uint8: np.ndarray) -> np.ndarray:
        """The target's top-1 labels (int64 [N]) of uint8 [N,H,W,3] images."""


@dataclass
class QueryCount:
    """``images_queried + images_from_cache`` is every image asked about."""

    images_queried: int = 0  # images the target answered: each one paid for
    images_from_cache: int = 0  # images answered from earlier answers (or a copy earlier in the same call)
    requests: int = 0  # queries the target answered (one per batch of at most ``batch_images``)
    throttled: int = 0  # requests the target refused for now (429/503) and that were sent again


class BlackBoxLabeler(TargetAccess):
    """Labels only. A subclass answers one batch of new images (``_query``); this class sends only the images
    it has no answer for, in batches of at most ``batch_images``, and counts them."""

    kind = BLACK_BOX

    def __init__(self, via: str, batch_images: int) -> None:
        super().__init__(via)
        self.batch_images = batch_images
        self.count = QueryCount()
        self._answers: dict[bytes, int] = {}

    @staticmethod
    def _key(image: np.ndarray) -> bytes:
        return hashlib.sha256(repr(image.shape).encode() + image.tobytes()).digest()

    def labels(self, images_uint8: np.ndarray) -> np.ndarray:
        require_uint8_images(images_uint8)
        keys = [self._key(image) for image in images_uint8]
        first: dict[bytes, int] = {}  # each unanswered image's first index
        for index, key in enumerate(keys):
            if key not in self._answers:
                first.setdefault(key, index)
        new = list(first.items())
        for start in range(0, len(new), self.batch_images):
            chunk = new[start : start + self.batch_images]
            answers = np.asarray(self._query(images_uint8[[index for _, index in chunk]]))
            if answers.shape != (len(chunk),):
                raise RuntimeError(f"{self.via} answered {answers.shape} labels for {len(chunk)} images")
            self._answers.update(zip((key for key, _ in chunk), answers.tolist()))
            self.count.requests += 1
            self.count.images_queried += len(chunk)
        self.count.images_from_cache += len(keys) - len(new)
        return np.asarray([self._answers[key] for key in keys], dtype=np.int64)

    def save_answers(self, path: Path) -> None:
        """Every answer so far (by image digest) and the counts, so that a resumed run pays for no image again."""
        keys = np.frombuffer(b"".join(self._answers), dtype=np.uint8).reshape(len(self._answers), DIGEST_BYTES)
        np.savez(path, keys=keys, labels=np.asarray(list(self._answers.values()), dtype=np.int64),
                 count=np.asarray(astuple(self.count), dtype=np.int64))

    def load_answers(self, path: Path) -> None:
        """The answers and counts ``save_answers`` kept (the counts: what the run has paid for so far)."""
        stored = np.load(path)
        self._answers = {key.tobytes(): int(label) for key, label in zip(stored["keys"], stored["labels"])}
        self.count = QueryCount(*stored["count"].tolist())

    @abstractmethod
    def _query(self, images_uint8: np.ndarray) -> np.ndarray:
        """The target's labels of these images (none answered before), in one query."""

"""FaceMix (the related system) without torch: a split protector (``runtime.split_protection``).

    edge:  uint8 ──facemix_edge──▶ f_i ──per group of GROUP_SIZE images, a fresh random orthogonal key A──▶ m = A·f
    cloud: m ──facemix_cloud──▶ h (the cloud only ever sees mixtures)
    edge:  ĥ = Aᵀ·h per group ──facemix_head──▶ logits

The keys never leave the edge: each batch's groups get new ones, drawn from the operating system's entropy.
A batch whose size is not a multiple of GROUP_SIZE is padded with decoys (public images the bundle ships, chosen
at random), so every image is mixed with three others: a lone image "mixed" in a group of one would leave as
±its features.
"""

from __future__ import annotations

import numpy as np

from pmc2.runtime.model_bundle import BundleModel, ModelBundle, run_single_output
from pmc2.runtime.pipeline import preprocess
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.split_protection import SplitProtector

GROUP_SIZE = 4  # images mixed together (FaceMix's S_G; training/facemix.py trains with the same)
FEATURES = BundleModel("facemix_edge", "normalized", "features")
MIDDLE = BundleModel("facemix_cloud", "mixed features", "mixed features", side="cloud")
HEAD = BundleModel("facemix_head", "demixed features", "logits")


def random_orthogonal(size: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    return (q * np.sign(np.diagonal(r))[None, :]).astype(np.float32)


def group_keys(count: int, rng: np.random.Generator, group_size: int = GROUP_SIZE) -> list[np.ndarray]:
    """Fresh keys for ``count`` images in groups of ``group_size`` (the last group may be smaller)."""
    sizes = [group_size] * (count // group_size) + ([count % group_size] if count % group_size else [])
    return [random_orthogonal(size, rng) for size in sizes]


def mix(values: np.ndarray, keys: list[np.ndarray]) -> np.ndarray:
    """Mix consecutive groups of ``values`` (group sizes = the keys' sizes): m = A·v per group."""
    groups = np.split(values, np.cumsum([len(key) for key in keys])[:-1])
    return np.concatenate([np.tensordot(key, group, axes=(1, 0)) for key, group in zip(keys, groups, strict=True)])


def demix(values: np.ndarray, keys: list[np.ndarray]) -> np.ndarray:
    """Undo ``mix`` with each group's transpose (exact when what ran in between was linear)."""
    return mix(values, [key.T for key in keys])


class FaceMix(SplitProtector):
    """FaceMix as a split protector. On the edge: features and mixing before the cloud, demixing and the head
    after it; ``decoys``: uint8 public images that fill up a batch's last group (default: the bundle's). On the
    cloud: the middle of the network, run on mixtures only."""

    models = (FEATURES, MIDDLE, HEAD)
    link = "facemix-features"
    images_per_request = 64  # 64 mixtures × 32 KiB of float16 stay well inside the cloud's body limit
    DECOYS = "facemix_decoys"  # the manifest's entry for the decoys

    def __init__(self, bundle: ModelBundle, side: str = "edge", settings: SessionSettings = SessionSettings(),
                 rng: np.random.Generator | None = None, decoys: np.ndarray | None = None) -> None:
        super().__init__(bundle, side, settings, rng)
        if decoys is None and side == "edge":
            decoys = bundle.stored_array(self.DECOYS)
        self.decoys = decoys

    def edge_part(self, images_uint8: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The float32 mixtures of a batch (decoys included) and their keys; the mixtures of a batch of N images
        demix to N + decoys outputs, the first N its own."""
        padding = -len(images_uint8) % GROUP_SIZE
        batch = np.concatenate([images_uint8, self.decoys[self.rng.choice(len(self.decoys), padding, replace=False)]])
        keys = group_keys(len(batch), self.rng)
        return mix(run_single_output(self.sessions[FEATURES.name], preprocess(batch)), keys), keys

    def cloud_part(self, received: np.ndarray) -> np.ndarray:
        return run_single_output(self.sessions[MIDDLE.name], received)

    def finish(self, cloud_outputs: np.ndarray, secret: list[np.ndarray], images: int) -> np.ndarray:
        """Labels of the first ``images`` of a batch (the rest are decoys)."""
        return run_single_output(self.sessions[HEAD.name], demix(cloud_outputs, secret)[:images]).argmax(axis=1)

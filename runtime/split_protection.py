"""Split protectors: the edge runs the first and last parts of a model, the cloud the part in between.

    edge:   uint8 [N] ──edge_part──▶ sent [M ≥ N, …] float32 ─────────┐  secret (stays on the edge)
    wire:   POST /v1/split/<protector>, float16 .npy both ways (runtime.tensor_payload)
    cloud:  sent ──cloud_part──▶ outputs [M, …] ──────────────────────┘
    edge:   outputs, secret ──finish──▶ labels [N]

One edge processor and one cloud route serve every split protector; each is one ``SplitProtector`` subclass
(its models, its three steps) registered in ``runtime.protection``. An instance is built for one side and
opens only that side's models: the edge's never runs the cloud part, the cloud's never holds a secret.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from pmc2.runtime.model_bundle import BundleModel, ModelBundle
from pmc2.runtime.sessions import SessionSettings

SPLIT_ROUTE = "/v1/split/{protector}"  # the cloud's route; the edge posts to it with the protector's name
SIDES = ("edge", "cloud")


class SplitProtector(ABC):
    """One split protector on one ``side``: the sessions of that side's models, the shapes of what the cloud part
    takes and gives (from the manifest, so the edge knows them without the cloud's model), and the random
    generator the edge part draws its secrets from (default: seeded by the operating system)."""

    models: ClassVar[tuple[BundleModel, ...]]  # exactly one of them with side "cloud"
    link: ClassVar[str]  # what the edge's reply names instead of a link codec
    images_per_request: ClassVar[int]  # images per cloud request: their payload must fit the cloud's body limit

    def __init__(self, bundle: ModelBundle, side: str, settings: SessionSettings = SessionSettings(),
                 rng: np.random.Generator | None = None) -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
        self.side = side
        self.rng = rng or np.random.default_rng()
        self.sessions = {model.name: bundle.session(model.name, settings) for model in self.models if model.side == side}
        (cloud,) = (bundle.manifest["models"][model.name] for model in self.models if model.side == "cloud")
        self.cloud_input_shape = tuple(cloud["inputs"][0]["shape"][1:])  # one item of what the cloud receives
        self.cloud_output_shape = tuple(cloud["outputs"][0]["shape"][1:])

    @abstractmethod
    def edge_part(self, images_uint8: np.ndarray) -> tuple[np.ndarray, object]:
        """What the cloud receives for a batch (float32, at least one item per image; the first ones may be
        followed by padding) and the secret that stays on the edge."""

    @abstractmethod
    def cloud_part(self, received: np.ndarray) -> np.ndarray:
        """The cloud's outputs, one per item received."""

    @abstractmethod
    def finish(self, cloud_outputs: np.ndarray, secret: object, images: int) -> np.ndarray:
        """The labels of the batch's ``images`` images from the cloud's outputs and the edge's secret."""

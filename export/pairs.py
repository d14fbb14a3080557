"""The shipped target/auxiliary pairs, each with the generator and compressor trained for it.

    pair ── target.pt, aux.pt (checkpoints/)
        ├── generator.pt, compressor.pt (checkpoints/ for the default pair, checkpoints/pairs/<name>/ otherwise)
        └── ONNX bundle (onnx_models/ for the default pair, onnx_models/pairs/<name>/ otherwise)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pmc2.runtime.paths import CHECKPOINTS, ONNX_MODELS



@dataclass(frozen=True)
class ModelPair:
    """Checkpoint files of one pair and the folder its ONNX bundle is exported to."""

    name: str
    target: Path
    aux: Path
    generator: Path
    compressor: Path
    onnx_models: Path

    @property
    def evaluation_record(self) -> Path:
        """The recorded output of ``python -m pmc2.export.evaluate --pair <name>`` on the 5,000 images."""
        return self.generator.parent / "evaluation.json"


def _second_pair(target: str, aux: str) -> ModelPair:
    folder = CHECKPOINTS / "pairs" / target
    return ModelPair(target, CHECKPOINTS / f"{target}.pt", CHECKPOINTS / f"{aux}.pt", folder / "generator.pt",
                     folder / "compressor.pt", ONNX_MODELS / "pairs" / target)


DEFAULT_PAIR = ModelPair("fastnet", CHECKPOINTS / "fastnet.pt", CHECKPOINTS / "compact_resnet.pt",
                         CHECKPOINTS / "generator.pt", CHECKPOINTS / "compressor.pt", ONNX_MODELS)
PAIRS: dict[str, ModelPair] = {pair.name: pair for pair in (DEFAULT_PAIR, _second_pair("compact_resnet", "fastnet"))}

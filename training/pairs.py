"""The shipped target/auxiliary pairs, each with the generator and compressor trained for it.

    pair ── target.pt, aux.pt (checkpoints/)
        ├── generator.pt, compressor.pt (checkpoints/ for the default pair, checkpoints/pairs/<name>/ otherwise)
        ├── other protectors trained for the same target (<pair folder>/protectors/<protector>/generator.pt)
        └── ONNX bundle (onnx_models/ for the default pair, onnx_models/pairs/<name>/ otherwise)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pmc2.runtime.paths import CHECKPOINTS, ONNX_MODELS
from pmc2.runtime.protection import DEFAULT_PROTECTOR


@dataclass(frozen=True)
class ModelPair:
    """Checkpoint files of one pair and the folder its ONNX bundle is exported to."""

    name: str
    target: Path
    aux: Path
    generator: Path
    compressor: Path
    onnx_models: Path
    other_protectors: tuple[tuple[str, Path], ...] = ()  # (protector, checkpoint) in the generator's slot
    facemix: Path | None = None  # FaceMix's split classifier (training/facemix.py), exported beside this pair's models
    protector: str = DEFAULT_PROTECTOR  # what ``generator`` is (runtime.protection)

    def with_protector(self, protector: str) -> "ModelPair":
        """This pair with ``protector``'s model in the generator's slot (same target, aux and compressor)."""
        checkpoint = dict(self.other_protectors)[protector]
        return replace(self, name=f"{self.name}+{protector}", generator=checkpoint, other_protectors=(),
                       protector=protector, facemix=None)

    def with_every_protector(self) -> list["ModelPair"]:
        """This pair, then this pair with each of its other protectors in the generator's slot."""
        return [self, *(self.with_protector(name) for name, _ in self.other_protectors)]

    @property
    def evaluation_record(self) -> Path:
        """The recorded output of ``python -m pmc2.training.evaluate --pair <name>`` on the 5,000 images."""
        return self.generator.parent / "evaluation.json"


def _other_protectors(folder: Path) -> tuple[tuple[str, Path], ...]:
    """DAPter's converter, trained for the pair whose checkpoints are in ``folder``."""
    return (("dapter", folder / "protectors" / "dapter" / "generator.pt"),)


def _second_pair(target: str, aux: str) -> ModelPair:
    folder = CHECKPOINTS / "pairs" / target
    return ModelPair(target, CHECKPOINTS / f"{target}.pt", CHECKPOINTS / f"{aux}.pt", folder / "generator.pt",
                     folder / "compressor.pt", ONNX_MODELS / "pairs" / target, _other_protectors(folder))


DEFAULT_PAIR = ModelPair("fastnet", CHECKPOINTS / "fastnet.pt", CHECKPOINTS / "compact_resnet.pt",
                         CHECKPOINTS / "generator.pt", CHECKPOINTS / "compressor.pt", ONNX_MODELS,
                         _other_protectors(CHECKPOINTS),
                         facemix=CHECKPOINTS / "protectors" / "facemix" / "facemix_fastnet.pt")
PAIRS: dict[str, ModelPair] = {pair.name: pair for pair in (DEFAULT_PAIR, _second_pair("compact_resnet", "fastnet"))}

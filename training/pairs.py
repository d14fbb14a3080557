"""The shipped target/auxiliary pairs, each with the generator and compressor trained for it.

    pair ── target.pt, aux.pt (checkpoints/)
        ├── generator.pt, compressor.pt (checkpoints/ for the default pair, checkpoints/pairs/<name>/ otherwise)
        ├── the other protectors trained for the same target, where the registry (runtime.protection) puts them:
        │   <pair folder>/protectors/<protector>/<its spec's checkpoint>
        │   └── its own compressor, where one was trained: <that folder>/<the compressor's spec's checkpoint>
        └── ONNX bundle (onnx_models/ for the default pair, onnx_models/pairs/<name>/ otherwise)

A protector whose spec names a compressor of its own that this pair has not trained goes through the pair's
``compressor`` (as DAPter does in the shipped pairs: none has protectors/dapter/compressor.pt yet).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pmc2.runtime.compressors import DEFAULT_COMPRESSOR, compressor_named
from pmc2.runtime.paths import CHECKPOINTS, ONNX_MODELS
from pmc2.runtime.protection import DEFAULT_PROTECTOR, protector_named


@dataclass(frozen=True)
class ModelPair:
    """Checkpoint files of one pair and the folder its ONNX bundle is exported to."""

    name: str
    target: Path
    aux: Path
    generator: Path
    compressor: Path
    onnx_models: Path
    protectors: tuple[tuple[str, Path], ...] = ()  # (protector, checkpoint) of the others trained for this pair
    protector: str = DEFAULT_PROTECTOR  # what ``generator`` is (runtime.protection)

    def _of_kind(self, kind: str) -> tuple[tuple[str, Path], ...]:
        return tuple((name, checkpoint) for name, checkpoint in self.protectors if protector_named(name).kind == kind)

    def _every_protector(self) -> tuple[tuple[str, Path], ...]:
        """(protector, checkpoint): the generator's, then the others'."""
        return ((self.protector, self.generator), *self.protectors)

    @property
    def other_protectors(self) -> tuple[tuple[str, Path], ...]:
        """(image protector, checkpoint) of the others, each of which can take the generator's slot."""
        return self._of_kind("image")

    @property
    def split_protectors(self) -> tuple[tuple[str, Path], ...]:
        """(split protector, checkpoint), exported beside this pair's models."""
        return self._of_kind("split")

    def model_checkpoints(self, kind: str | None = None) -> dict[str, Path]:
        """Every protector model (of protectors of ``kind``, or of any) of this pair's bundle, by its name in
        runtime.protection → the checkpoint it is exported from."""
        return {model.name: checkpoint for name, checkpoint in self._every_protector()
                if kind in (None, protector_named(name).kind) for model in protector_named(name).models}

    def compressors(self) -> dict[str, Path]:
        """Every compressor trained for this pair, by name (runtime.compressors) → its checkpoint: the bundle's own
        (``compressor``), and each other image protector's own where its checkpoint exists."""
        trained = {DEFAULT_COMPRESSOR: self.compressor}
        for name, checkpoint in self.other_protectors:
            spec = compressor_named(protector_named(name).compressor)
            if spec.name not in trained and (checkpoint.parent / spec.checkpoint).is_file():
                trained[spec.name] = checkpoint.parent / spec.checkpoint
        return trained

    def compressor_of(self, protector: str) -> str:
        """The compressor image protector ``protector``'s links go through in this pair's bundle: its spec's where
        this pair has it trained, else the bundle's own."""
        own = protector_named(protector, "image").compressor
        return own if own in self.compressors() else DEFAULT_COMPRESSOR

    def model_compressors(self) -> dict[str, str]:
        """Every image protector model of this pair's bundle → the compressor its links go through."""
        return {model.name: self.compressor_of(name) for name, _ in self._every_protector()
                if protector_named(name).kind == "image" for model in protector_named(name).models}

    def with_protector(self, protector: str) -> "ModelPair":
        """This pair with ``protector``'s model in the generator's slot and in the compressor's the one its links go
        through (``compressor_of``: its own where this pair has it trained, else the bundle's own); same target and
        aux."""
        checkpoint = dict(self.other_protectors)[protector]
        return replace(self, name=f"{self.name}+{protector}", generator=checkpoint, protectors=(), protector=protector,
                       compressor=self.compressors()[self.compressor_of(protector)])

    def with_every_protector(self) -> list["ModelPair"]:
        """This pair, then this pair with each of its other image protectors in the generator's slot."""
        return [self, *(self.with_protector(name) for name, _ in self.other_protectors)]

    @property
    def evaluation_record(self) -> Path:
        """The recorded output of ``python -m pmc2.training.evaluate --pair <name>`` on the 5,000 images."""
        return self.generator.parent / "evaluation.json"


def _trained(folder: Path, *protectors: str) -> tuple[tuple[str, Path], ...]:
    """The ``protectors`` trained for the pair whose checkpoints are in ``folder``, each with its checkpoint."""
    return tuple((name, folder / "protectors" / name / protector_named(name).checkpoint) for name in protectors)


def _second_pair(target: str, aux: str, *protectors: str) -> ModelPair:
    folder = CHECKPOINTS / "pairs" / target
    return ModelPair(target, CHECKPOINTS / f"{target}.pt", CHECKPOINTS / f"{aux}.pt", folder / "generator.pt",
                     folder / "compressor.pt", ONNX_MODELS / "pairs" / target, _trained(folder, *protectors))


DEFAULT_PAIR = ModelPair("fastnet", CHECKPOINTS / "fastnet.pt", CHECKPOINTS / "compact_resnet.pt",
                         CHECKPOINTS / "generator.pt", CHECKPOINTS / "compressor.pt", ONNX_MODELS,
                         _trained(CHECKPOINTS, "dapter", "facemix"))
PAIRS: dict[str, ModelPair] = {pair.name: pair for pair in (
    DEFAULT_PAIR, _second_pair("compact_resnet", "fastnet", "dapter"))}


def every_variant() -> list[ModelPair]:
    """Every pair with each of its protectors, the default first: what the evaluation measures and attacks."""
    return [variant for pair in PAIRS.values() for variant in pair.with_every_protector()]

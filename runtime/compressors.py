"""The neural compressors a bundle may hold, found by name or wire id: the only module that knows them.

    protector's manifest entry ──"compressor"──▶ COMPRESSORS[name] ──▶ its g_a, g_s and entropy tables in the bundle
    batch header, byte 5, high 4 bits ──compressor_with_wire_id──▶ the same spec on the cloud

Each is a CompressAI FactorizedPrior exported as two ONNX models and one table file. "pmc2" is the bundle's own
(the models ``g_a``/``g_s``, the manifest's ``entropy_tables``: what every bundle held before there were others;
wire id 0, so its batches keep their bytes); a protector trained with a task-aware compressor of its own names it
in its ``ProtectorSpec`` (``runtime.protection``). To add one: one ``CompressorSpec`` below.
"""

from __future__ import annotations

from dataclasses import dataclass

WIRE_ID_BITS = 4  # a codec's and a compressor's wire id share byte 5 of the batch header (runtime.wire_format)
WIRE_IDS = range(1 << WIRE_ID_BITS)


class UnknownCompressor(ValueError):
    """No compressor has that name or wire id, or the model bundle does not hold it."""


class TablesMismatch(ValueError):
    """A batch of latents coded with other entropy tables than the receiver's bundle holds for its compressor (an
    edge and a cloud on different model bundles): decoding it would give other latents, and so a wrong answer."""


TABLES_HEADER = "X-PMC2-Tables"  # ModelBundle.tables_sha256: the entropy tables (and codebook) a batch was coded with


@dataclass(frozen=True)
class CompressorSpec:
    name: str
    wire_id: int  # the high 4 bits of the batch header's byte 5 (runtime.wire_format)
    g_a: str  # the bundle's model names of its analysis and synthesis transforms
    g_s: str
    tables: str  # the manifest key of its entropy tables
    tables_file: str  # the file they are exported to, in the bundle folder
    codebook: str  # the manifest key of its latent codebook, where it has one (runtime.latent_codebook)
    codebook_file: str
    checkpoint: str = "compressor.pt"  # its weights' file name (training.pairs says in which folder)

    @property
    def models(self) -> tuple[str, str]:
        return self.g_a, self.g_s


def compressor(name: str, wire_id: int, prefix: str) -> CompressorSpec:
    """A compressor whose bundle files are the bundle's own ones' names behind ``prefix``."""
    return CompressorSpec(name, wire_id, f"{prefix}g_a", f"{prefix}g_s", f"{prefix}entropy_tables",
                          f"{prefix}entropy_bottleneck.npz", f"{prefix}latent_codebook", f"{prefix}latent_codebook.npz")


def _registry(*specs: CompressorSpec) -> dict[str, CompressorSpec]:
    wire_ids = [spec.wire_id for spec in specs]
    if len(set(wire_ids)) < len(specs) or not set(wire_ids) <= set(WIRE_IDS):
        raise ValueError(f"compressor wire ids must be distinct and in {WIRE_IDS}: {wire_ids}")
    return {spec.name: spec for spec in specs}


COMPRESSORS: dict[str, CompressorSpec] = _registry(
    compressor("pmc2", 0, ""),
    compressor("dapter", 1, "dapter_"),  # DAPter's task-aware compressor, trained on its converter's output
)
DEFAULT_COMPRESSOR = "pmc2"  # the bundle's own; what a protector whose manifest entry names none goes through


def compressor_named(name: str) -> CompressorSpec:
    if name not in COMPRESSORS:
        raise UnknownCompressor(f"unknown compressor {name!r}; choose from {', '.join(COMPRESSORS)}")
    return COMPRESSORS[name]


def compressor_with_wire_id(wire_id: int) -> CompressorSpec:
    for spec in COMPRESSORS.values():
        if spec.wire_id == wire_id:
            return spec
    raise UnknownCompressor(f"unknown compressor id {wire_id}")

"""The folder of exported models: manifest, integrity check and onnxruntime sessions.

    onnx_models/manifest.json ──sha256 check──▶ model bytes ──▶ onnxruntime.InferenceSession
                              └─each compressor's entropy tables (runtime.compressors)──▶ EntropyTables

A bundle holds the compressors whose tables its manifest lists: its own ("pmc2": ``g_a``, ``g_s``,
``entropy_tables``), and any a protector was trained with (e.g. ``dapter_g_a``, ``dapter_g_s``,
``dapter_entropy_tables``). A protector model's entry names its compressor (``"compressor"``) only when it is not
the bundle's own; an entry without one goes through the bundle's own, as every protector did before protectors
had compressors of their own. Manifests without other compressors are thus byte for byte what they were.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pmc2.runtime.compressors import COMPRESSORS, DEFAULT_COMPRESSOR, UnknownCompressor, compressor_named
from pmc2.runtime.latent_codebook import LatentCodebook
from pmc2.runtime.paths import ONNX_MODELS
from pmc2.runtime.model_encryption import ModelDecryptionError, decrypt_model
from pmc2.runtime.rans import EntropyTables
from pmc2.runtime.sessions import SessionSettings, create_session

DEFAULT_MODELS = ONNX_MODELS
SUPPORTED_MANIFEST_VERSION = 1


class ModelIntegrityError(RuntimeError):
    """A model file is missing or does not match the sha256 in the manifest."""


@dataclass(frozen=True)
class BundleModel:
    """What one ONNX model of a protector takes and gives (the manifest's ``input_space`` and ``output_space``),
    which side runs it, and whether its manifest entry says what the pixel links carry behind it (``link_image``,
    read from its checkpoint at export: an image protector's)."""

    name: str
    input_space: str
    output_space: str
    side: str = "edge"  # or "cloud"
    link_image: bool = False


@dataclass
class ModelBundle:
    """``model_key``: AES-256 key for the models the manifest marks as encrypted (held in memory only)."""

    folder: Path
    manifest: dict = field(repr=False)
    model_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def open(cls, folder: Path = DEFAULT_MODELS, model_key: bytes | None = None) -> "ModelBundle":
        path = Path(folder) / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"no manifest.json in {folder}; run `python export/to_onnx.py`")
        manifest = json.loads(path.read_text())
        if manifest.get("format_version") != SUPPORTED_MANIFEST_VERSION:
            raise ValueError(f"{path}: unsupported manifest format_version {manifest.get('format_version')!r}")
        return cls(Path(folder), manifest, model_key)

    @property
    def sha256(self) -> str:
        """The bundle's identity: the sha256 of its manifest, which holds the sha256 of every file it serves.
        Benchmarks and reports record it so that a figure names the models it measured."""
        return hashlib.sha256((self.folder / "manifest.json").read_bytes()).hexdigest()

    def _verified_bytes(self, entry: dict, data: bytes | None = None) -> bytes:
        path = self.folder / entry["file"]
        if data is None:
            if not path.is_file():
                raise ModelIntegrityError(f"{path} is missing")
            data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise ModelIntegrityError(f"{path} has sha256 {digest}, manifest says {entry['sha256']}: refusing to load it")
        return data

    def model_bytes(self, name: str) -> bytes:
        """The model's ONNX bytes, decrypted in memory when the bundle has a key and an encrypted copy."""
        if name not in self.manifest["models"]:
            raise KeyError(f"model {name!r} is not in {self.folder / 'manifest.json'}")
        entry = self.manifest["models"][name]
        if self.model_key is not None and "encrypted" in entry:
            blob = self._verified_bytes(entry["encrypted"])
            try:
                plaintext = decrypt_model(blob, self.model_key, name)
            except ModelDecryptionError as error:
                raise ModelIntegrityError(str(error)) from error
            return self._verified_bytes(entry, plaintext)
        return self._verified_bytes(entry)

    def session(self, name: str, settings: SessionSettings = SessionSettings()):
        return create_session(self.model_bytes(name), settings, name=name)

    @property
    def compressors(self) -> tuple[str, ...]:
        """The compressors whose entropy tables the manifest lists, in the registry's order (runtime.compressors)."""
        return tuple(name for name, spec in COMPRESSORS.items() if spec.tables in self.manifest)

    def _tables_entry(self, compressor: str) -> dict:
        if compressor not in self.compressors:
            compressor_named(compressor)
            raise UnknownCompressor(f"the model bundle {self.folder} holds no compressor {compressor!r}; "
                                    f"it holds {', '.join(self.compressors) or 'none'}")
        return self.manifest[compressor_named(compressor).tables]

    def entropy_tables(self, compressor: str) -> EntropyTables:
        entry = self._tables_entry(compressor)
        self._verified_bytes(entry)
        return EntropyTables.load(self.folder / entry["file"])

    def tables_sha256(self, compressor: str) -> str:
        """What an edge and a cloud must agree on to code ``compressor``'s latents alike: the sha256 the manifest gives
        its entropy tables, or, where it has a latent codebook too, the sha256 of both files' digests."""
        tables = self._tables_entry(compressor)["sha256"]
        codebook = self.manifest.get(compressor_named(compressor).codebook)
        return tables if codebook is None else hashlib.sha256(f"{tables} {codebook['sha256']}".encode()).hexdigest()

    def latent_codebook(self, compressor: str) -> LatentCodebook | None:
        """``compressor``'s latent codebook (runtime.latent_codebook), None if it has none."""
        entry = self.manifest.get(compressor_named(compressor).codebook)
        return None if entry is None else LatentCodebook.load(io.BytesIO(self._verified_bytes(entry)))

    def latent_size(self, compressor: str) -> tuple[int, int]:
        height, width = self._tables_entry(compressor)["latent_size"]
        return height, width

    def compressor_of(self, model: str) -> str:
        """The compressor that codes what protector model ``model`` outputs: the one its entry names, else the
        bundle's own; UnknownCompressor if the bundle does not hold it."""
        name = self.manifest["models"].get(model, {}).get("compressor", DEFAULT_COMPRESSOR)
        self._tables_entry(name)
        return name

    def stored_array(self, entry: str) -> np.ndarray:
        """The array of the .npy file the manifest lists under ``entry`` (a protector's, e.g. FaceMix's decoys)."""
        return np.load(io.BytesIO(self._verified_bytes(self.manifest[entry])), allow_pickle=False)

    @property
    def link_image(self) -> str:
        """What the pixel links carry behind the generator: "perturbed" (x') or "decoded" (the edge's decode x̂)."""
        return self.link_image_of("generator")

    def link_image_of(self, model: str) -> str:
        """What the pixel links carry behind a protector's ``model`` (its own entry's, else the bundle's)."""
        return self.manifest["models"].get(model, {}).get("link_image", self.manifest.get("link_image", "perturbed"))

    @property
    def class_names(self) -> tuple[str, ...]:
        """The target's class names, by label id."""
        return tuple(self.manifest["classes"])

    def verify_all(self) -> None:
        """Check every file listed in the manifest (every compressor's models and tables among them), raising
        ModelIntegrityError on the first mismatch, that each compressor whose tables it lists has both its models
        listed, and that the bundle holds each compressor a model names."""
        for compressor in self.compressors:
            lacking = [model for model in compressor_named(compressor).models if model not in self.manifest["models"]]
            if lacking:
                raise ModelIntegrityError(f"the model bundle {self.folder} lists compressor {compressor!r}'s entropy "
                                          f"tables but not its {', '.join(lacking)}")
        for name, entry in self.manifest["models"].items():
            self.model_bytes(name)
            if "compressor" in entry:
                self.compressor_of(name)
        for entry in self.manifest.values():  # the files beside the models: entropy tables, a protector's arrays
            if isinstance(entry, dict) and {"file", "sha256"} <= entry.keys():
                self._verified_bytes(entry)


def run_single_output(session, inputs: np.ndarray) -> np.ndarray:
    """Run a one-input, one-output session on a float32 batch."""
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(inputs, dtype=np.float32)})[0]

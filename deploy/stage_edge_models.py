"""The staging copy of the edge's models for an image with encrypted models (deploy/GUIDE.md, step 2).

    python deploy/stage_edge_models.py --models onnx_models --out build/staging/edge-encrypted --key-file model.key

    onnx_models/ ──copy──▶ OUT/ ──AES-256-GCM──▶ OUT/<model>.onnx.enc (+ manifest entry), OUT/<model>.onnx removed

Encrypted: every compressor's g_a and the edge-side models of every protector the bundle holds (the generator,
DAPter's converter, FaceMix's edge part and head) — what the edge alone runs. g_s, the entropy tables and the public
decoys stay plain: the cloud holds g_s and the tables too. The source folder is never written (encrypting in place would
rewrite the committed manifest), and OUT holds no plaintext of an encrypted model. The key file is created
(32 random bytes, mode 0600) if missing; keep it outside the build context, and give it to the edge through
the KBS (`default/pmc2/model-key`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from pmc2.runtime.compressors import compressor_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.model_encryption import encrypt_bundle
from pmc2.runtime.protection import bundle_protectors, protector_named


def encrypted_models(bundle: ModelBundle) -> list[str]:
    """The models only the edge runs: every compressor's g_a and every protector's edge-side models, in manifest
    order."""
    edge_only = {*(compressor_named(name).g_a for name in bundle.compressors),
                 *(model for name in bundle_protectors(bundle) for model in protector_named(name).edge_models)}
    return [name for name in bundle.manifest["models"] if name in edge_only]


def stage(models: Path, out: Path, key: bytes) -> list[str]:
    """Copy the bundle's top-level files to ``out`` (replacing it), encrypt the edge-only models there and remove
    their plaintext; returns the names encrypted."""
    bundle = ModelBundle.open(models)
    bundle.verify_all()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for path in sorted(models.iterdir()):
        if path.is_file() and not path.name.endswith(".enc"):
            shutil.copy2(path, out / path.name)
    names = encrypted_models(bundle)
    encrypt_bundle(out, names, key)
    for name in names:
        (out / bundle.manifest["models"][name]["file"]).unlink()
    return names


def read_or_create_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(os.urandom(32))
    return path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("onnx_models"))
    parser.add_argument("--out", type=Path, required=True, help="the staging folder (replaced)")
    parser.add_argument("--key-file", type=Path, required=True, help="32-byte AES-256 key; created if missing")
    args = parser.parse_args()
    if args.out.resolve() == args.models.resolve():
        sys.exit("stage_edge_models: --out must differ from --models (the source folder is never written)")
    names = stage(args.models, args.out, read_or_create_key(args.key_file))
    print(f"staged {args.out}: encrypted {', '.join(names)}")


if __name__ == "__main__":
    main()

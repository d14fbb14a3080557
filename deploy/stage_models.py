"""The staging copy of one side's models: what deploy/Dockerfile copies, whole, into the edge or the cloud image.

    python deploy/stage_models.py --side edge  --models onnx_models --out build/staging/edge
    python deploy/stage_models.py --side cloud --models onnx_models --out build/staging/cloud
    python deploy/stage_models.py --side edge  --models onnx_models --out build/staging/edge-encrypted --key-file model.key

    bundle ──manifest + registries (SIDES)──▶ the side's files ──copy──▶ OUT/ (+ manifest.json)
                                     edge, with a key: OUT/<model>.onnx ──AES-256-GCM──▶ OUT/<model>.onnx.enc

The edge gets the models it runs (``edge_server.state.edge_models``: every compressor's g_a and g_s, every
protector's edge models), every compressor's entropy tables and the arrays its protectors load
(``ProtectorSpec.edge_arrays``: FaceMix's decoys). The cloud gets the target, every compressor's g_s and tables and
the cloud models of the split protectors; never an edge-only model (g_a, a protector's edge models). A bundle
lacking what a side needs (a fitted bundle has no target: ``python -m pmc2.fit.cloud_models`` writes the cloud's
folder) is refused, naming what is missing. With ``--key-file`` (edge only) the edge-only models are encrypted and
their plaintext is not staged; g_s, the tables and the public decoys stay plain. The key file is created (32 random
bytes, mode 0600) if missing; keep it outside the build context and give it to the edge through the KBS
(`default/pmc2/model-key`). The source folder is never written, and OUT is replaced only once it is complete.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from pmc2.cloud_server.recognition import cloud_models
from pmc2.edge_server.state import edge_models
from pmc2.runtime.compressors import compressor_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.model_encryption import encrypt_bundle
from pmc2.runtime.protection import bundle_protectors, protector_named


class StagingError(ValueError):
    """The bundle lacks a file the side needs, or the options do not fit the side."""


class SideNeeds(NamedTuple):
    models: tuple[str, ...]  # names in the manifest's "models"
    entries: tuple[str, ...]  # other manifest entries with a file: entropy tables, codebooks, a protector's arrays


def _compressor_files(bundle: ModelBundle) -> tuple[str, ...]:
    """Each compressor's entropy tables, and its latent codebook where it has one: both sides code with them."""
    specs = [compressor_named(name) for name in bundle.compressors]
    return (*(spec.tables for spec in specs), *(spec.codebook for spec in specs if spec.codebook in bundle.manifest))


def edge_needs(bundle: ModelBundle) -> SideNeeds:
    arrays = (entry for name in bundle_protectors(bundle) for entry in protector_named(name).edge_arrays)
    return SideNeeds(edge_models(bundle), (*_compressor_files(bundle), *arrays))


def cloud_needs(bundle: ModelBundle) -> SideNeeds:
    return SideNeeds(cloud_models(bundle), _compressor_files(bundle))


SIDES: dict[str, Callable[[ModelBundle], SideNeeds]] = {"edge": edge_needs, "cloud": cloud_needs}


def edge_only_models(bundle: ModelBundle) -> list[str]:
    """The models the edge runs and the cloud does not: every compressor's g_a, every protector's edge models."""
    shared = set(cloud_models(bundle))
    return [name for name in edge_models(bundle) if name not in shared]


def side_files(bundle: ModelBundle, side: str) -> list[str]:
    """The bundle's files ``side`` needs besides manifest.json; StagingError for one its manifest does not list or
    one outside the bundle's folder (the manifest is staged as it is, so each must sit beside it)."""
    if side not in SIDES:
        raise StagingError(f"unknown side {side!r}; choose from {', '.join(SIDES)}")
    needs = SIDES[side](bundle)
    listed = [(bundle.manifest["models"], needs.models), (bundle.manifest, needs.entries)]
    missing = [name for section, names in listed for name in names if name not in section]
    if missing:
        raise StagingError(f"the {side} needs {', '.join(missing)}, which {bundle.folder / 'manifest.json'} does not list")
    files = [section[name]["file"] for section, names in listed for name in names]
    outside = [file for file in files if Path(file).name != file]
    if outside:
        raise StagingError(f"{bundle.folder / 'manifest.json'} names files outside its folder ({', '.join(outside)}): "
                           "stage a self-contained copy of the bundle")
    return files


def stage(models: Path, out: Path, side: str, key: bytes | None = None) -> list[str]:
    """Write ``side``'s files of the bundle in ``models`` and its manifest to ``out`` (replaced once complete);
    with ``key`` (edge only) its edge-only models encrypted, without their plaintext. Returns the files staged."""
    if key is not None and side != "edge":
        raise StagingError("only the edge's models are encrypted; the cloud's are staged plain")
    bundle = ModelBundle.open(models)
    bundle.verify_all()
    files = side_files(bundle, side)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name in (*files, "manifest.json"):
        shutil.copyfile(models / name, partial / name)
    if key is not None:
        encrypted = edge_only_models(bundle)
        encrypt_bundle(partial, encrypted, key)
        for name in encrypted:
            (partial / bundle.manifest["models"][name]["file"]).unlink()
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return sorted(path.name for path in out.iterdir())


def read_or_create_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(os.urandom(32))
    return path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=SIDES, required=True)
    parser.add_argument("--models", type=Path, default=Path("onnx_models"), help="the bundle folder (never written)")
    parser.add_argument("--out", type=Path, required=True, help="the staging folder (replaced)")
    parser.add_argument("--key-file", type=Path, help="edge only: encrypt its edge-only models with this 32-byte "
                        "AES-256 key (created if missing)")
    args = parser.parse_args()
    models, out = args.models.resolve(), args.out.resolve()
    if out.is_relative_to(models) or models.is_relative_to(out):
        parser.error("--out and --models must not hold one another (the source folder is never written)")
    if args.key_file is not None and args.side != "edge":
        parser.error("--key-file is for the edge only: the cloud's models are staged plain")
    try:
        key = None if args.key_file is None else read_or_create_key(args.key_file)
        files = stage(args.models, args.out, args.side, key)
    except StagingError as error:
        sys.exit(f"stage_models: {error}")
    print(f"staged {args.out} for the {args.side} from {args.models}: {' '.join(files)}")


if __name__ == "__main__":
    main()

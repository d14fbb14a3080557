"""The cloud's models folder for a fitted bundle: its compressors' g_s, entropy tables and latent codebooks beside the
cloud's own target.

    python -m pmc2.fit.cloud_models --bundle runs/fit/bundle --target path/to/target.onnx --out cloud_models/
    python -m pmc2.cloud_server --models cloud_models/ …

The cloud decodes what the fitted edge sends with the bundle's g_s and classifies with its target, unchanged; a
black-box fit never held that target, so its bundle has none. The target takes CIFAR-10-normalised [N,3,32,32]
images (the cloud normalises before classifying) and answers logits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import onnx

from pmc2.export.to_onnx import io_description
from pmc2.runtime.compressors import compressor_named
from pmc2.runtime.model_bundle import ModelBundle


def cloud_models(bundle: Path, target: Path, out: Path) -> dict:
    """Write ``out`` (each compressor's g_s, entropy tables and codebook, target, manifest) and return its manifest."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    target_bytes = target.read_bytes()
    onnx.checker.check_model(onnx.load_from_string(target_bytes))
    out.mkdir(parents=True, exist_ok=True)
    models = {}
    for compressor in ModelBundle.open(bundle).compressors:  # what the cloud runs besides its own target
        spec = compressor_named(compressor)
        entry, tables = manifest["models"][spec.g_s], manifest[spec.tables]
        shutil.copyfile(bundle / entry["file"], out / Path(entry["file"]).name)
        models[spec.g_s] = {**entry, "file": Path(entry["file"]).name}
        for files in (tables, manifest.get(spec.codebook)):  # a compressor with a latent codebook: its file too
            if files is not None:
                shutil.copyfile(bundle / files["file"], out / files["file"])
    (out / "target.onnx").write_bytes(target_bytes)
    models["target"] = {"file": "target.onnx", "sha256": hashlib.sha256(target_bytes).hexdigest(),
                        **io_description(target_bytes), "input_space": "normalized", "output_space": "logits",
                        "source": str(target)}
    cloud = {**{key: value for key, value in manifest.items() if key != "models"}, "models": models}
    (out / "manifest.json").write_text(json.dumps(cloud, indent=2, sort_keys=True) + "\n")
    return cloud


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a fitted bundle (python -m pmc2.fit's <out>/bundle)")
    parser.add_argument("--target", type=Path, required=True, help="the cloud's classifier, an ONNX file")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for path, what in ((args.bundle / "manifest.json", "fitted bundle"), (args.target, "target ONNX file")):
        if not path.is_file():
            raise SystemExit(f"no {what} at {path}")
    cloud_models(args.bundle, args.target, args.out)
    print(f"wrote {args.out}: g_s and entropy tables of {args.bundle}, target {args.target}")


if __name__ == "__main__":
    main()

"""Export the shipped generator, g_a, g_s, target and auxiliary classifier to ONNX.

    checkpoints/*.pt ──torch.onnx.export (opset 17, dynamic batch)──▶ onnx_models/<name>.onnx
                     ──EntropyBottleneck tables──────────────────────▶ onnx_models/entropy_bottleneck.npz
                     ──files, sha256, I/O, normalisation, provenance──▶ onnx_models/manifest.json

Every file is checked (onnx.checker, shape inference) and compared with torch on the bundled images.
Run from the repository root: ``python export/to_onnx.py``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
from pathlib import Path

import onnx
import torch
from compressai.layers import GDN
from torch import nn

from pmc2.export.classifiers import load_classifier
from pmc2.export.compressor import entropy_tables, load_compressor
from pmc2.export.generator import PixelOutput
from pmc2.export.onnx_parity import check_parity
from pmc2.export.records import sha256_file
from pmc2.export.train_compressor import load_generator
from pmc2.runtime.cifar10 import REPO_ROOT
from pmc2.runtime.normalization import CIFAR10_MEAN, CIFAR10_STD

OPSET = 17
MODELS = ("generator", "g_a", "g_s", "target", "aux")
DEFAULT_OUT = REPO_ROOT / "onnx_models"
DEFAULT_CHECKPOINTS = REPO_ROOT / "checkpoints"
MANIFEST_VERSION = 1


class InferenceGDN(nn.Module):
    """GDN / inverse GDN with its re-parametrised β and γ frozen into plain tensors (exportable)."""

    def __init__(self, gdn: GDN) -> None:
        super().__init__()
        channels = gdn.beta.numel()
        self.inverse = gdn.inverse
        with torch.no_grad():
            self.register_buffer("beta", gdn.beta_reparam(gdn.beta).clone())
            self.register_buffer("gamma", gdn.gamma_reparam(gdn.gamma).reshape(channels, channels, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = nn.functional.conv2d(x * x, self.gamma, self.beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def exportable_transform(transform: nn.Sequential) -> nn.Sequential:
    """A copy of g_a or g_s with every GDN replaced by its frozen inference form."""
    copied = copy.deepcopy(transform)
    for index, layer in enumerate(copied):
        if isinstance(layer, GDN):
            copied[index] = InferenceGDN(layer)
    return copied.eval()


class Synthesis(nn.Module):
    """g_s followed by the clamp to [0, 1] that CompressAI's decompress() applies."""

    def __init__(self, g_s: nn.Sequential) -> None:
        super().__init__()
        self.g_s = exportable_transform(g_s)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.g_s(y_hat).clamp(0, 1)


def checkpoint_provenance(path: Path) -> dict:
    record_path = path.with_suffix(".record.json")
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    return {
        "file": str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path),
        "sha256": sha256_file(path),
        "git_commit": record.get("git_commit", "unknown"),
        "command": record.get("command", "unknown"),
    }


def to_onnx_bytes(module: nn.Module, example: torch.Tensor, input_name: str, output_name: str) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(
        module.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
        input_names=[input_name], output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}}, do_constant_folding=True,
    )
    model = onnx.load_from_string(buffer.getvalue())
    model.producer_name, model.producer_version = "pmc2.export.to_onnx", ""
    onnx.checker.check_model(model, full_check=True)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return model.SerializeToString()


def io_description(model_bytes: bytes) -> dict:
    model = onnx.load_from_string(model_bytes)

    def describe(values) -> list[dict]:
        return [
            {
                "name": value.name,
                "shape": [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim],
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name,
            }
            for value in values
        ]

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def export_all(checkpoints: Path, out: Path, selected: tuple[str, ...], target: str, aux: str, compressor_name: str) -> dict:
    """Write the selected ONNX files, the entropy tables and the manifest; return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    generator_path = checkpoints / "generator.pt"
    compressor_path = checkpoints / f"{compressor_name}.pt"
    sources = {
        "generator": generator_path, "g_a": compressor_path, "g_s": compressor_path,
        "target": checkpoints / f"{target}.pt", "aux": checkpoints / f"{aux}.pt",
    }
    compressor = load_compressor(compressor_path) if {"g_a", "g_s"} & set(selected) else None
    latent_channels = compressor.entropy_bottleneck.channels if compressor else None
    modules = {
        "generator": lambda: (PixelOutput(load_generator(generator_path)), "images", "perturbed", torch.zeros(1, 3, 32, 32)),
        "g_a": lambda: (exportable_transform(compressor.g_a), "images", "latent", torch.zeros(1, 3, 32, 32)),
        "g_s": lambda: (Synthesis(compressor.g_s), "latent", "images", torch.zeros(1, latent_channels, 2, 2)),
        "target": lambda: (load_classifier(sources["target"]), "images", "logits", torch.zeros(1, 3, 32, 32)),
        "aux": lambda: (load_classifier(sources["aux"]), "images", "logits", torch.zeros(1, 3, 32, 32)),
    }
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update({
        "format_version": MANIFEST_VERSION,
        "opset": OPSET,
        "normalization": {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD), "layout": "NCHW",
                          "dtype": "float32", "applies_to": "pixels scaled to [0, 1]"},
    })
    models = manifest.setdefault("models", {})
    for name in selected:
        module, input_name, output_name, example = modules[name]()
        model_bytes = to_onnx_bytes(module, example, input_name, output_name)
        (out / f"{name}.onnx").write_bytes(model_bytes)
        models[name] = {
            "file": f"{name}.onnx", "sha256": hashlib.sha256(model_bytes).hexdigest(),
            **io_description(model_bytes),
            "input_space": {"generator": "normalized", "g_a": "unit", "g_s": "latent"}.get(name, "normalized"),
            "output_space": {"generator": "unit", "g_a": "latent", "g_s": "unit"}.get(name, "logits"),
            "checkpoint": checkpoint_provenance(sources[name]),
        }
        if name in ("target", "aux"):
            models[name]["architecture"] = torch.load(sources[name], weights_only=False)["name"]
    if compressor is not None:
        tables = entropy_tables(compressor)
        tables.save(out / "entropy_bottleneck.npz")
        manifest["entropy_tables"] = {
            "file": "entropy_bottleneck.npz", "sha256": sha256_file(out / "entropy_bottleneck.npz"),
            "arrays": {"quantized_cdf": "int32 [C, L]", "cdf_length": "int32 [C]", "offset": "int32 [C]",
                       "medians": "float32 [C]"},
            "channels": tables.channels, "latent_size": [2, 2], "precision_bits": 16,
            "checkpoint": checkpoint_provenance(compressor_path),
        }
    manifest["exporter"] = {"torch": torch.__version__.split("+")[0], "onnx": onnx.__version__}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_CHECKPOINTS)
    parser.add_argument("--target", default="fastnet", help="target classifier checkpoint name")
    parser.add_argument("--aux", default="compact_resnet", help="auxiliary classifier checkpoint name")
    parser.add_argument("--compressor", default="compressor", help="compressor checkpoint name")
    parser.add_argument("--skip-parity", action="store_true", help="do not compare ORT with torch afterwards")
    args = parser.parse_args()
    selected = tuple(name.strip() for name in args.models.split(",") if name.strip())
    unknown = set(selected) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
    export_all(args.checkpoints, args.out, selected, args.target, args.aux, args.compressor)
    print(f"exported {', '.join(selected)} to {args.out}")
    if not args.skip_parity:
        print(check_parity(args.checkpoints, args.out, selected, args.target, args.aux, args.compressor))


if __name__ == "__main__":
    main()

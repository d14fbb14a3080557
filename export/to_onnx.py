"""Export each pair's generator, g_a, g_s, target and auxiliary classifier (and the other protectors
trained for its target: DAPter's converter, FaceMix's split model; and the compressors trained for them) to ONNX.

    checkpoints ──torch.onnx.export (opset 17, dynamic batch)──▶ <bundle>/<name>.onnx
                ──EntropyBottleneck tables──────────────────────▶ <bundle>/entropy_bottleneck.npz (other compressors':
                                                                  <bundle>/<its prefix>entropy_bottleneck.npz)
                ──its latent codebook, if it has one────────────▶ <bundle>/latent_codebook.npz (runtime.latent_codebook)
                ──files, sha256, I/O, normalisation, provenance──▶ <bundle>/manifest.json

What each protector model takes and gives, and whether its entry records the link image, come from its
spec (``runtime.protection``). Each compressor the pair has trained (``ModelPair.compressors``) is exported
under its spec's names (``runtime.compressors``); a protector model's entry names the compressor its links go
through (``"compressor"``) only when that is not the bundle's own, which happens only when the pair has that
compressor trained and so exported with it. A bundle with the bundle's own compressor alone thus has the
manifest it had before compressors had names (the shipped ones), and its DAPter goes through that compressor.
Weights are stored as float16 wherever that is exact (the checkpoints hold float16 values), with a Cast that
onnxruntime folds away when it loads the model: half the file size, the same numbers. A second pair's bundle
refers to the default bundle's classifier files instead of copying them. Every file is checked (onnx.checker,
shape inference) and compared with torch on the bundled images.
Run from the repository root: ``python export/to_onnx.py``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from compressai.layers import GDN
from compressai.models import FactorizedPrior
from onnx import numpy_helper
from torch import nn

from pmc2.training.classifiers import load_classifier
from pmc2.training.compressor import entropy_tables, latent_codebook_of, latent_size, load_compressor
from pmc2.training.facemix import SPLIT_PARTS, FaceMixPart
from pmc2.training.generator import PixelOutput, load_generator
from pmc2.export.onnx_parity import check_parity
from pmc2.training.pairs import DEFAULT_PAIR, PAIRS, ModelPair
from pmc2.training.records import record_path, sha256_file
from pmc2.runtime.cifar10 import CLASSES, load_split
from pmc2.runtime.compressors import COMPRESSORS, DEFAULT_COMPRESSOR, compressor_named
from pmc2.runtime.facemix import FEATURES, HEAD, MIDDLE, FaceMix
from pmc2.runtime.paths import REPO_ROOT, SHARED_DATA
from pmc2.runtime.normalization import CIFAR10_MEAN, CIFAR10_STD
from pmc2.runtime.protection import PROTECTOR_MODELS, protector_named

OPSET = 17
DECOYS = 128  # public images the FaceMix edge mixes into a batch's last group
MODELS = ("generator", "g_a", "g_s", "target", "aux")
SPACES = {  # (input, output) of the models that are no protector's
    "target": ("normalized", "logits"), "aux": ("normalized", "logits"),
    **{spec.g_a: ("unit", "latent") for spec in COMPRESSORS.values()},
    **{spec.g_s: ("latent", "unit") for spec in COMPRESSORS.values()},
}
MANIFEST_VERSION = 1

ExportedModule = tuple[nn.Module, str, str, torch.Tensor]  # module, input name, output name, example input


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


def _freeze_gdns(module: nn.Module) -> None:
    """Replace every GDN inside ``module``, at any depth (a residual block's too), by its frozen inference form."""
    for name, child in module.named_children():
        if isinstance(child, GDN):
            setattr(module, name, InferenceGDN(child))
        else:
            _freeze_gdns(child)


def exportable_transform(transform: nn.Sequential) -> nn.Sequential:
    """A copy of g_a or g_s with every GDN replaced by its frozen inference form."""
    copied = copy.deepcopy(transform)
    _freeze_gdns(copied)
    return copied.eval()


class Synthesis(nn.Module):
    """g_s followed by the clamp to [0, 1] that CompressAI's decompress() applies."""

    def __init__(self, g_s: nn.Sequential) -> None:
        super().__init__()
        self.g_s = exportable_transform(g_s)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.g_s(y_hat).clamp(0, 1)


def checkpoint_provenance(path: Path) -> dict:
    record_file = record_path(path)
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    return {
        "file": str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path),
        "sha256": sha256_file(path),
        "git_commit": record.get("git_commit", "unknown"),
        "command": record.get("command", "unknown"),
    }


def store_weights_as_float16(model: onnx.ModelProto) -> None:
    """Store each float32 weight matrix or kernel that float16 represents exactly as float16 plus a Cast.

    Vectors (biases, BatchNorm statistics) stay float32: they weigh little, and shape-inference tools
    such as onnxruntime's quantisation pre-processing evaluate small vector Casts symbolically and fail."""
    casts = []
    for initializer in model.graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT or len(initializer.dims) < 2:
            continue
        values = numpy_helper.to_array(initializer)
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):
            continue
        name = initializer.name
        initializer.CopyFrom(numpy_helper.from_array(half, f"{name}.float16"))
        casts.append(onnx.helper.make_node("Cast", [f"{name}.float16"], [name], name=f"{name}.to_float32",
                                           to=onnx.TensorProto.FLOAT))
    nodes = [*casts, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def to_onnx_bytes(module: nn.Module, example: torch.Tensor, input_name: str, output_name: str) -> bytes:
    buffer = io.BytesIO()
    # PRESERVE (the module is in eval mode) keeps BatchNormalization separate instead of folding it into
    # the convolutions, so the weights stay the checkpoint's float16 values; onnxruntime fuses them on load.
    torch.onnx.export(
        module.eval(), (example,), buffer, dynamo=False, opset_version=OPSET, training=torch.onnx.TrainingMode.PRESERVE,
        input_names=[input_name], output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}}, do_constant_folding=True,
    )
    model = onnx.load_from_string(buffer.getvalue())
    model.producer_name, model.producer_version = "pmc2.export.to_onnx", ""
    store_weights_as_float16(model)
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


def _image_module(checkpoint: Path, _model: str) -> ExportedModule:
    return PixelOutput(load_generator(checkpoint)), "images", "perturbed", torch.zeros(1, 3, 32, 32)


@dataclass(frozen=True)
class SplitExport:
    """How a split protector's models are built from its checkpoint, and the files its bundle holds beside them."""

    module: Callable[[Path, str], ExportedModule]  # (checkpoint, model name) → the model to export
    files: Callable[[Path], dict[str, dict]]  # bundle folder → manifest entries of the files it wrote there


FACEMIX_PARTS = {FEATURES.name: "edge", MIDDLE.name: "cloud", HEAD.name: "head"}  # training.facemix.SPLIT_PARTS


def _facemix_module(checkpoint: Path, model: str) -> ExportedModule:
    part = FACEMIX_PARTS[model]
    _, input_name, output_name, shape = SPLIT_PARTS[part]
    return FaceMixPart(load_classifier(checkpoint), part), input_name, output_name, torch.zeros(shape)


def _facemix_decoys(out: Path) -> dict[str, dict]:
    """FaceMix's decoys: the first DECOYS public CIFAR-10 training images, as .npy (byte-for-byte reproducible)."""
    path = out / f"{FaceMix.DECOYS}.npy"
    np.save(path, load_split(SHARED_DATA, "train").images[:DECOYS], allow_pickle=False)
    return {FaceMix.DECOYS: {"file": path.name, "sha256": sha256_file(path), "images": DECOYS,
                             "source": f"the first {DECOYS} CIFAR-10 training images (public)"}}


SPLIT_EXPORTS = {"facemix": SplitExport(_facemix_module, _facemix_decoys)}


def _protector_modules(pair: ModelPair) -> dict[str, Callable[[], ExportedModule]]:
    """How each protector model of ``pair``'s bundle is built: an image protector's from its generator
    checkpoint, a split protector's as its SPLIT_EXPORTS entry says."""
    modules = {}
    for name, checkpoint in ((pair.protector, pair.generator), *pair.protectors):
        spec = protector_named(name)
        build = _image_module if spec.split is None else SPLIT_EXPORTS[name].module
        modules.update({model.name: functools.partial(build, checkpoint, model.name) for model in spec.models})
    return modules


def _analysis(compressor: FactorizedPrior) -> ExportedModule:
    return exportable_transform(compressor.g_a), "images", "latent", torch.zeros(1, 3, 32, 32)


def _synthesis(compressor: FactorizedPrior) -> ExportedModule:
    channels = compressor.entropy_bottleneck.channels
    return Synthesis(compressor.g_s), "latent", "images", torch.zeros(1, channels, *latent_size(compressor))


def _compressor_modules(compressors: dict[str, FactorizedPrior]) -> dict[str, Callable[[], ExportedModule]]:
    """How each compressor's g_a and g_s are built, under its spec's model names."""
    return {model: functools.partial(build, compressor) for name, compressor in compressors.items()
            for model, build in zip(compressor_named(name).models, (_analysis, _synthesis), strict=True)}


def _tables_entry(compressor: FactorizedPrior, checkpoint: Path, file: Path) -> dict:
    """Write ``compressor``'s entropy tables to ``file``; return their manifest entry."""
    tables = entropy_tables(compressor)
    tables.save(file)
    return {
        "file": file.name, "sha256": sha256_file(file),
        "arrays": {"quantized_cdf": "int32 [C, L]", "cdf_length": "int32 [C]", "offset": "int32 [C]",
                   "medians": "float32 [C]"},
        "channels": tables.channels, "latent_size": list(latent_size(compressor)), "precision_bits": 16,
        "checkpoint": checkpoint_provenance(checkpoint),
    }


def _codebook_entry(compressor: FactorizedPrior, checkpoint: Path, file: Path) -> dict | None:
    """Write ``compressor``'s latent codebook, if it has one, to ``file``, its index table fitted to the public
    training labels' class frequencies (integers only: the same bytes on every CPU); return its manifest entry."""
    class_counts = np.bincount(load_split(SHARED_DATA, "train").labels, minlength=len(CLASSES))
    codebook = latent_codebook_of(compressor, class_counts)
    if codebook is None:
        return None
    codebook.save(file)
    return {"file": file.name, "sha256": sha256_file(file), "entries": codebook.size,
            "arrays": {"entries": "int16 [K, C, h, w]", "index_cdf": "int32 [K + 2]"},
            "index_table": "the class frequencies of the public training labels",
            "checkpoint": checkpoint_provenance(checkpoint)}


def _link_image(checkpoint: Path) -> str:
    """What the pixel links carry behind the protector in ``checkpoint`` (runtime.protection)."""
    return torch.load(checkpoint, weights_only=False).get("link_image", "perturbed")


def _shared_classifier_entry(bundle: Path, checkpoint: Path, out: Path) -> dict:
    """The manifest entry of ``bundle``'s model exported from ``checkpoint``, with its file relative to ``out``."""
    digest = sha256_file(checkpoint)
    for entry in json.loads((bundle / "manifest.json").read_text())["models"].values():
        if entry["checkpoint"]["sha256"] == digest:
            return {**entry, "file": os.path.relpath(bundle / entry["file"], out)}
    raise ValueError(f"{bundle} has no model exported from {checkpoint}; export that bundle first")


def pair_models(pair: ModelPair) -> tuple[str, ...]:
    """Every model of ``pair``'s bundle: the five of every pair, its other protectors' and its other compressors'."""
    compressor_models = (model for name in pair.compressors() for model in compressor_named(name).models)
    return (*MODELS, *(name for name in (*pair.model_checkpoints(), *compressor_models) if name not in MODELS))


def export_all(pair: ModelPair, out: Path | None = None, selected: tuple[str, ...] | None = None,
               classifiers_from: Path | None = None) -> dict:
    """Write the selected ONNX files, the entropy tables and the manifest of ``pair``; return the manifest.

    With ``classifiers_from`` (a bundle folder), target and aux refer to that bundle's files exported from
    the same checkpoints instead of being exported again."""
    out, selected = out or pair.onnx_models, selected or pair_models(pair)
    out.mkdir(parents=True, exist_ok=True)
    trained, model_compressors = pair.compressors(), pair.model_compressors()
    sources = {**pair.model_checkpoints(), "target": pair.target, "aux": pair.aux,
               **{model: checkpoint for name, checkpoint in trained.items() for model in compressor_named(name).models}}
    compressors = {name: load_compressor(checkpoint) for name, checkpoint in trained.items()
                   if set(compressor_named(name).models) & set(selected)}
    modules = {
        **_protector_modules(pair),
        **_compressor_modules(compressors),
        "target": lambda: (load_classifier(pair.target), "images", "logits", torch.zeros(1, 3, 32, 32)),
        "aux": lambda: (load_classifier(pair.aux), "images", "logits", torch.zeros(1, 3, 32, 32)),
    }
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update({
        "format_version": MANIFEST_VERSION,
        "pair": pair.name,
        "opset": OPSET,
        "classes": list(CLASSES),
        "normalization": {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD), "layout": "NCHW",
                          "dtype": "float32", "applies_to": "pixels scaled to [0, 1]"},
    })
    held = {DEFAULT_COMPRESSOR, *compressors, *(name for name, spec in COMPRESSORS.items() if spec.tables in manifest)}
    lacking = sorted({own for model, own in model_compressors.items() if model in selected and own not in held})
    if lacking:  # a protector's entry names its own compressor only beside that compressor's files
        raise ValueError(f"export compressor {', '.join(lacking)}'s models with the protector that goes through it")
    models = manifest.setdefault("models", {})
    for name in selected:
        if classifiers_from is not None and name in ("target", "aux"):
            models[name] = _shared_classifier_entry(classifiers_from, sources[name], out)
            continue
        module, input_name, output_name, example = modules[name]()
        model_bytes = to_onnx_bytes(module, example, input_name, output_name)
        (out / f"{name}.onnx").write_bytes(model_bytes)
        spec = PROTECTOR_MODELS.get(name)
        input_space, output_space = (spec.input_space, spec.output_space) if spec else SPACES[name]
        models[name] = {
            "file": f"{name}.onnx", "sha256": hashlib.sha256(model_bytes).hexdigest(),
            **io_description(model_bytes),
            "input_space": input_space, "output_space": output_space,
            "weights_storage": "float16 where exact, cast to float32 on load",
            "checkpoint": checkpoint_provenance(sources[name]),
        }
        if spec and spec.link_image:
            models[name]["link_image"] = _link_image(sources[name])
        if model_compressors.get(name, DEFAULT_COMPRESSOR) != DEFAULT_COMPRESSOR:
            models[name]["compressor"] = model_compressors[name]
        if name in ("target", "aux"):
            models[name]["architecture"] = torch.load(sources[name], weights_only=False)["name"]
    for name, compressor in compressors.items():
        spec = compressor_named(name)
        manifest[spec.tables] = _tables_entry(compressor, trained[name], out / spec.tables_file)
    for name, checkpoint in trained.items():  # integers only, so written whatever is selected
        spec = compressor_named(name)
        codebook = _codebook_entry(compressors.get(name) or load_compressor(checkpoint), checkpoint,
                                   out / spec.codebook_file)
        if codebook is not None:
            manifest[spec.codebook] = codebook
    for name, _ in pair.split_protectors:
        if {model.name for model in protector_named(name).models} & set(selected):
            manifest.update(SPLIT_EXPORTS[name].files(out))
    manifest["link_image"] = _link_image(pair.generator)
    manifest["exporter"] = {"torch": torch.__version__.split("+")[0], "onnx": onnx.__version__}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=("all", *PAIRS), default="all",
                        help="which pair's bundle to export (default: every pair, the default one first)")
    parser.add_argument("--models", default=None,
                        help=f"comma-separated subset of {','.join(MODELS)} and the pair's other protectors' and "
                             "compressors' models (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="bundle folder (only with a single --pair)")
    parser.add_argument("--skip-parity", action="store_true", help="do not compare ORT with torch afterwards")
    args = parser.parse_args()
    if args.out is not None and args.pair == "all":
        parser.error("--out needs a single --pair")
    pairs = list(PAIRS.values()) if args.pair == "all" else [PAIRS[args.pair]]
    for pair in pairs:
        selected = pair_models(pair)
        if args.models is not None:
            selected = tuple(name.strip() for name in args.models.split(",") if name.strip())
            unknown = set(selected) - set(pair_models(pair))
            if unknown:
                parser.error(f"pair {pair.name} has no model(s) {', '.join(sorted(unknown))}; "
                             f"choose from {', '.join(pair_models(pair))}")
        out = args.out or pair.onnx_models
        shared = None if pair == DEFAULT_PAIR else DEFAULT_PAIR.onnx_models
        export_all(pair, out, selected, classifiers_from=shared)
        print(f"exported {', '.join(selected)} of pair {pair.name} to {out}")
        if not args.skip_parity:
            print(check_parity(pair, out, selected))


if __name__ == "__main__":
    main()

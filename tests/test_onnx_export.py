"""The shipped ONNX models: manifest integrity, re-export, and ORT-vs-torch parity."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from pmc2.training.compressor import CODEBOOK_KEY, TABLE_BUFFERS, MissingEntropyTables, entropy_tables, load_compressor
from pmc2.export.onnx_parity import TOLERANCE, ParityReport, check_parity
from pmc2.training.pairs import DEFAULT_PAIR, PAIRS, ModelPair
from pmc2.training.records import sha256_file
from pmc2.export.store_entropy_tables import computed_tables, store_tables
from pmc2.export.to_onnx import export_all, pair_models, store_weights_as_float16
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation
from pmc2.runtime.model_bundle import DEFAULT_MODELS, ModelBundle, ModelIntegrityError
from pmc2.runtime.protection import LINK_IMAGES, PROTECTOR_MODELS
from pmc2.runtime.rans import EntropyTables
from pmc2.runtime.sessions import create_session

EVERY_PAIR = pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())


@EVERY_PAIR
def test_manifest_describes_every_model_and_the_normalisation(pair: ModelPair) -> None:
    bundle = ModelBundle.open(pair.onnx_models)
    manifest = bundle.manifest
    assert set(manifest["models"]) == set(pair_models(pair)) and manifest["pair"] == pair.name
    assert manifest["opset"] >= 17 and bundle.link_image in LINK_IMAGES
    for protector, checkpoint in pair.other_protectors:  # each in the generator's slot, with what its links carry
        assert manifest["models"][protector]["checkpoint"]["sha256"] == sha256_file(checkpoint)
        assert bundle.link_image_of(protector) == "perturbed" and manifest["models"][protector]["output_space"] == "unit"
    for name, checkpoint in pair.model_checkpoints().items():  # every protector's models, with their spec's spaces
        entry, spec = manifest["models"][name], PROTECTOR_MODELS[name]
        assert entry["checkpoint"]["sha256"] == sha256_file(checkpoint), name
        assert (entry["input_space"], entry["output_space"]) == (spec.input_space, spec.output_space), name
        assert ("link_image" in entry) == spec.link_image, name
    assert manifest["normalization"]["mean"] == [0.4914, 0.4822, 0.4465]
    for entry in manifest["models"].values():
        assert entry["inputs"][0]["shape"][0] == "batch" and entry["inputs"][0]["dtype"] == "float32"
        assert len(entry["sha256"]) == 64 and entry["checkpoint"]["sha256"]
    sources = {"generator": pair.generator, "g_a": pair.compressor, "target": pair.target, "aux": pair.aux}
    for name, checkpoint in sources.items():
        assert manifest["models"][name]["checkpoint"]["sha256"] == sha256_file(checkpoint), name
    bundle.verify_all()


def test_second_pair_refers_to_the_default_bundles_classifiers() -> None:
    for pair in PAIRS.values():
        models = ModelBundle.open(pair.onnx_models).manifest["models"]
        for role in ("target", "aux"):
            resolved = (pair.onnx_models / models[role]["file"]).resolve()
            assert resolved.parent == DEFAULT_MODELS.resolve(), (pair.name, role)


def test_float16_storage_keeps_exact_weights_and_the_outputs(tmp_path: Path) -> None:
    exact = np.array([[0.5, -2.0], [0.125, 3.0]], dtype=np.float32)
    inexact = np.array([[0.1, 0.0], [0.0, 0.2]], dtype=np.float32)
    bias = np.array([0.5, 1.0], dtype=np.float32)  # exact in float16, but a vector: stays float32
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["xw"]), onnx.helper.make_node("MatMul", ["xw", "v"], ["xwv"]),
         onnx.helper.make_node("Add", ["xwv", "b"], ["y"])],
        "affine", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(exact, "w"), numpy_helper.from_array(inexact, "v"), numpy_helper.from_array(bias, "b")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    store_weights_as_float16(model)
    onnx.checker.check_model(model, full_check=True)
    stored = {init.name: init.data_type for init in model.graph.initializer}
    assert stored == {"w.float16": onnx.TensorProto.FLOAT16, "v": onnx.TensorProto.FLOAT, "b": onnx.TensorProto.FLOAT}
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    output = create_session(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(output, x @ exact @ inexact + bias, rtol=1e-6)


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    shutil.copytree(DEFAULT_MODELS, folder)
    data = bytearray((folder / "generator.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "generator.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="generator.onnx"):
        ModelBundle.open(folder).session("generator")


@EVERY_PAIR
def test_reexport_reproduces_the_committed_files(pair: ModelPair, tmp_path: Path) -> None:
    """Every file, and the manifest entry for entry: benchmarks and reports name a bundle by its manifest's sha256."""
    export_all(pair, tmp_path, classifiers_from=None if pair == DEFAULT_PAIR else DEFAULT_MODELS)
    fresh = json.loads((tmp_path / "manifest.json").read_text())
    committed = json.loads((pair.onnx_models / "manifest.json").read_text())
    for name in pair_models(pair):
        assert fresh["models"][name]["sha256"] == committed["models"][name]["sha256"], name
    for entry in ("entropy_tables", "facemix_decoys"):
        assert fresh.get(entry, {}).get("sha256") == committed.get(entry, {}).get("sha256"), entry
    if pair != DEFAULT_PAIR:  # its target and aux name the default bundle's files, relative to the folder written
        for role in ("target", "aux"):
            fresh["models"][role]["file"] = committed["models"][role]["file"]
    assert fresh == committed


def assert_every_model_matches(pair: ModelPair, data: LabelledImages | None) -> ParityReport:
    """Every model of the pair, g_a and g_s included, within tolerance, and every image's stream byte-identical."""
    report = check_parity(pair, pair.onnx_models, pair_models(pair), data=data)
    assert report.ok(), str(report)
    assert report.coded_images == report.images * len(pair.compressors()), "g_a, rANS and g_s were not compared"
    return report


@EVERY_PAIR
def test_parity_on_the_bundled_sample(pair: ModelPair) -> None:
    assert_every_model_matches(pair, None)


@EVERY_PAIR
def test_parity_on_all_evaluation_images(pair: ModelPair, shared_cifar: Path) -> None:
    assert assert_every_model_matches(pair, load_evaluation(shared_cifar)).images == 5_000


def test_parity_catches_a_g_a_that_chooses_other_latents(tmp_path: Path) -> None:
    """torch's g_a made to pick the next class's codebook entry: every stream differs (its symbols, far from any
    tie), the coder alone does not."""
    checkpoint = torch.load(DEFAULT_PAIR.compressor, map_location="cpu", weights_only=False)
    checkpoint[CODEBOOK_KEY]["symbols"] = checkpoint[CODEBOOK_KEY]["symbols"].roll(1, dims=0)
    torch.save(checkpoint, tmp_path / "compressor.pt")
    pair = replace(DEFAULT_PAIR, compressor=tmp_path / "compressor.pt")
    report = check_parity(pair, pair.onnx_models, ("g_a", "g_s"), data=load_evaluation(None).subset(slice(0, 50)))
    assert report.stream_mismatches == report.coded_images == 50 and report.coder_mismatches == 0
    assert report.rounded_at_ties == 0
    assert report.max_abs_difference["g_a"] > TOLERANCE and not report.ok()


def test_loading_a_compressor_keeps_its_stored_tables_and_never_recomputes(tmp_path: Path) -> None:
    checkpoint = torch.load(DEFAULT_PAIR.compressor, map_location="cpu", weights_only=False)
    recomputed = computed_tables(checkpoint)["_quantized_cdf"]
    stored = recomputed.clone()
    stored[0, 1] += 1  # a table that update() would never give
    path = tmp_path / "compressor.pt"
    torch.save(checkpoint, path)
    store_tables(path, {"_quantized_cdf": stored})
    loaded = entropy_tables(load_compressor(path)).quantized_cdf
    np.testing.assert_array_equal(loaded, stored.numpy())
    assert not np.array_equal(loaded, recomputed.numpy())


def test_a_compressor_without_tables_is_refused(tmp_path: Path) -> None:
    checkpoint = torch.load(DEFAULT_PAIR.compressor, map_location="cpu", weights_only=False)
    for name in TABLE_BUFFERS:
        checkpoint["state_dict"][f"entropy_bottleneck.{name}"] = torch.empty(0, dtype=torch.int32)
    torch.save(checkpoint, tmp_path / "compressor.pt")
    with pytest.raises(MissingEntropyTables, match="store_entropy_tables"):
        load_compressor(tmp_path / "compressor.pt")


def test_shipped_tables_are_the_ones_stored_in_each_checkpoint() -> None:
    for pair in PAIRS.values():
        for compressor, checkpoint in pair.compressors().items():
            shipped = ModelBundle.open(pair.onnx_models).entropy_tables(compressor)
            stored = entropy_tables(load_compressor(checkpoint))
            for name in ("quantized_cdf", "cdf_length", "offset", "medians"):
                np.testing.assert_array_equal(getattr(shipped, name), getattr(stored, name),
                                              err_msg=f"{pair.name}, {compressor}: {name}")


def test_parity_reports_streams_written_with_other_tables_without_crashing(tmp_path: Path) -> None:
    """Same symbols, other bytes: the bundle's tables are not the checkpoint's. Parity must say so."""
    folder = tmp_path / "bundle"
    shutil.copytree(DEFAULT_MODELS, folder)
    tables = EntropyTables.load(folder / "entropy_bottleneck.npz")
    cdf = tables.quantized_cdf.copy()
    lengths = tables.cdf_length
    for channel in range(len(cdf)):  # move probability between the two most likely symbols of each channel
        top = np.argsort(np.diff(cdf[channel, : lengths[channel]]))[-2:]
        cdf[channel, min(top) + 1 : max(top) + 1] += 64 if top[0] < top[1] else -64
    EntropyTables(cdf, lengths, tables.offset, tables.medians).save(folder / "entropy_bottleneck.npz")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["entropy_tables"]["sha256"] = sha256_file(folder / "entropy_bottleneck.npz")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    report = check_parity(DEFAULT_PAIR, folder, ("g_a", "g_s"))
    assert report.coder_mismatches > 0 and report.stream_mismatches > 0
    assert not report.ok()
    assert "FAILED" in str(report)

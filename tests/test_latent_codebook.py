"""The latent codebook: g_a snaps to one of K stored latents, in torch and in the exported ONNX alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from pmc2.training.classifiers import build_classifier
from pmc2.training.compressor import (CODEBOOK_KEY, CodebookAnalysis, build_compressor, load_compressor,
                                    save_compressor)
from pmc2.training.generator import build_generator
from pmc2.training.data import to_unit
from pmc2.training.latent_codebook import (WEIGHT_DECAYS, CodeShaping, class_codes, edge_latents, fit_chooser,
                                         shape_decoded_entries)
from pmc2.export.to_onnx import exportable_transform, to_onnx_bytes
from pmc2.runtime.cifar10 import load_evaluation


def _compressor_with_codebook(tmp_path: Path) -> tuple[Path, torch.Tensor]:
    torch.manual_seed(0)
    path = tmp_path / "compressor.pt"
    compressor = build_compressor(32, 48)
    with torch.no_grad():  # an untrained g_a maps everything near 0; spread its latents over many codes
        compressor.g_a[0].weight.mul_(50)
    save_compressor(compressor, path, {"loss": "test"})
    data = load_evaluation(None).subset(slice(0, 200))
    compressor = load_compressor(path)
    latents = edge_latents(build_generator("unet", 4).eval(), compressor, data.images).clone()
    labels = torch.from_numpy(data.labels).long()
    symbols = torch.round(latents - compressor.entropy_bottleneck._get_medians().detach()).to(torch.int16)
    codes, shares = class_codes(symbols, labels)
    assert codes.shape == (10, 48, 2, 2) and codes.dtype == torch.int16 and all(0 < share <= 1 for share in shares)
    weight, bias, fitting = fit_chooser(latents, labels)
    assert weight.shape == (10, 48 * 4) and bias.shape == (10,) and fitting["weight_decay"] in WEIGHT_DECAYS
    checkpoint = torch.load(path, weights_only=False)
    checkpoint[CODEBOOK_KEY] = {"symbols": codes, "weight": weight, "bias": bias}
    torch.save(checkpoint, path)
    return path, codes


def test_every_bitstream_decodes_to_a_codebook_latent(tmp_path: Path) -> None:
    path, codes = _compressor_with_codebook(tmp_path)
    compressor = load_compressor(path)
    assert isinstance(compressor.g_a, CodebookAnalysis)
    images = torch.rand(64, 3, 32, 32)
    compressed = compressor.compress(images)
    symbols = compressor.entropy_bottleneck.decompress(compressed["strings"][0], compressed["shape"])
    medians = compressor.entropy_bottleneck._get_medians().detach()
    decoded = torch.round(symbols - medians).to(torch.int16)
    known = {tuple(code.flatten().tolist()) for code in codes}
    assert {tuple(code.flatten().tolist()) for code in decoded} <= known
    # without the codebook the same images give latents that are not all codebook entries
    plain = build_compressor(32, 48)
    plain.load_state_dict(torch.load(path, weights_only=False)["state_dict"])
    raw = torch.round(plain.eval().g_a(images) - medians).to(torch.int16)
    assert not {tuple(code.flatten().tolist()) for code in raw} <= known


def test_exported_analysis_snaps_to_the_same_entries(tmp_path: Path) -> None:
    path, _ = _compressor_with_codebook(tmp_path)
    analysis = exportable_transform(load_compressor(path).g_a)
    session = ort.InferenceSession(to_onnx_bytes(analysis, torch.zeros(1, 3, 32, 32), "images", "latent"))
    images = torch.rand(200, 3, 32, 32)
    with torch.inference_mode():
        expected = analysis(images).numpy()
    np.testing.assert_array_equal(session.run(None, {"images": images.numpy()})[0], expected)


def test_shaping_fine_tunes_only_the_decoder_and_lowers_the_entries_similarity(tmp_path: Path) -> None:
    path, codes = _compressor_with_codebook(tmp_path)
    compressor = load_compressor(path, with_codebook=False)
    untouched = {name: value.clone() for name, value in compressor.state_dict().items() if not name.startswith("g_s.")}
    data = load_evaluation(None).subset(slice(0, 200))
    target, aux = (build_classifier(name).eval().requires_grad_(False) for name in ("fastnet", "compact_resnet"))
    shaping = shape_decoded_entries(compressor, target, aux, codes, to_unit(torch.from_numpy(data.images).permute(0, 3, 1, 2)),
                                    torch.from_numpy(data.labels).long(), CodeShaping(steps=30, images_per_class=10))
    assert np.mean(shaping["abs_ssim"]["after"]) < np.mean(shaping["abs_ssim"]["before"])
    after = compressor.state_dict()
    assert all(torch.equal(after[name], value) for name, value in untouched.items())  # g_a, entropy model: as they were
    assert all(torch.equal(value, value.half().float()) for name, value in after.items() if name.startswith("g_s."))

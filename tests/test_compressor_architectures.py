"""The compressor's transforms (training/compressor.py ARCHITECTURES): each codes a 32×32 image to its latent,
rebuilds from its checkpoint, and exports to ONNX with the same outputs; training from one of another shape is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from compressai.layers import GDN

from pmc2.export.to_onnx import Synthesis, exportable_transform, to_onnx_bytes
from pmc2.training.compressor import ARCHITECTURES, build_compressor, latent_size, load_compressor, save_compressor
from pmc2.training.train_compressor import CompressorConfig, train_on


LATENT_SIDES = {"factorized": 2, "residual": 2, "residual-8x8": 8}


def test_every_architecture_is_checked_here() -> None:
    assert set(LATENT_SIDES) == set(ARCHITECTURES)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_codes_to_its_latent_and_its_checkpoint_rebuilds_it(architecture: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_compressor(16, 24, architecture)
    images, side = torch.rand(4, 3, 32, 32), LATENT_SIDES[architecture]
    assert model.g_a(images).shape == (4, 24, side, side) and latent_size(model) == (side, side)
    save_compressor(model, tmp_path / "compressor.pt", {})
    loaded = load_compressor(tmp_path / "compressor.pt")
    assert type(loaded) is ARCHITECTURES[architecture]
    with torch.inference_mode():
        torch.testing.assert_close(loaded(images)["x_hat"], model.eval()(images)["x_hat"])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_exported_transforms_hold_no_trainable_gdn_and_give_torchs_outputs(architecture: str) -> None:
    torch.manual_seed(1)
    model = build_compressor(16, 24, architecture).eval()
    analysis, synthesis = exportable_transform(model.g_a), Synthesis(model.g_s)
    assert sum(isinstance(layer, GDN) for layer in model.g_a.modules()) >= 1
    assert not any(isinstance(layer, GDN) for part in (analysis, synthesis) for layer in part.modules())
    images, latents = torch.rand(8, 3, 32, 32), 3 * torch.randn(8, 24, *latent_size(model))
    for module, example, names in ((analysis, images, ("images", "latent")), (synthesis, latents, ("latent", "images"))):
        session = ort.InferenceSession(to_onnx_bytes(module, example[:1], *names))
        with torch.inference_mode():
            expected = module(example).numpy()
        np.testing.assert_allclose(session.run(None, {names[0]: example.numpy()})[0], expected, rtol=1e-4, atol=1e-4)
    with torch.inference_mode():
        torch.testing.assert_close(analysis(images), model.g_a(images), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(synthesis(latents), model.g_s(latents).clamp(0, 1), rtol=1e-4, atol=1e-5)


def test_training_from_a_compressor_of_another_shape_is_refused_naming_the_options(tmp_path: Path) -> None:
    save_compressor(build_compressor(16, 24, "residual"), tmp_path / "residual.pt", {})
    images, labels = torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    for config in (CompressorConfig(n=16, m=24), CompressorConfig(n=16, m=32, architecture="residual")):
        with pytest.raises(SystemExit, match="pass --architecture residual --n 16 --m 24 "):
            train_on(config, (images, labels), (images, labels), "digest", None, {}, tmp_path / "out", resume=False,
                     init=tmp_path / "residual.pt")
    torch.save({"state_dict": {}}, tmp_path / "generator.pt")
    with pytest.raises(SystemExit, match="is not a compressor checkpoint"):
        train_on(CompressorConfig(), (images, labels), (images, labels), "digest", None, {}, tmp_path / "out",
                 resume=False, init=tmp_path / "generator.pt")
    assert not (tmp_path / "out").exists()

"""The runtime works with torch made unimportable, and its small parts behave."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.compressors import DEFAULT_COMPRESSOR
from pmc2.runtime.cpu_budget import available_cpus, cgroup_cpu_limit
from pmc2.runtime.edge_protection import EdgeProtector
from pmc2.runtime.image_decoding import NotAnImage, WrongImageSize, decode_image, decode_images
from pmc2.runtime.link_codecs import CodecContext, UnknownCodec, codec_named, codecs_for
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.neural_codec import NeuralCodec
from pmc2.runtime.pipeline import perturb, preprocess
from pmc2.runtime.wire_format import EncodedBatch
from pmc2.runtime.sessions import SessionSettings

NO_TORCH_SCRIPT = """
import importlib, pkgutil, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import pmc2.runtime
for module in pkgutil.iter_modules(pmc2.runtime.__path__):
    importlib.import_module(f"pmc2.runtime.{module.name}")
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.link_codecs import CodecContext, codec_named
from pmc2.runtime.pipeline import classify, perturb, preprocess
bundle = ModelBundle.open()
data = load_evaluation(None).subset(slice(0, 32))
perturbed = perturb(bundle.session("generator"), preprocess(data.images))
codec = codec_named("neural").build(CodecContext(bundle, g_a=bundle.session("g_a"), g_s=bundle.session("g_s")))
streams = codec.encode(perturbed)
labels = classify(bundle.session("target"), codec.decode(streams, len(streams)))
assert "torch" not in [name for name, mod in sys.modules.items() if mod is not None and name.split(".")[0] == "torch"]
print(len(streams), labels.shape[0], sum(len(s) for s in streams))
"""


def test_runtime_runs_the_whole_pipeline_without_torch() -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    streams, labels, total_bytes = map(int, result.stdout.split())
    assert streams == labels == 32 and total_bytes >= 32


def test_cgroup_quota_limits_the_cpu_count(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert cgroup_cpu_limit(cpu_max) == 1.5
    assert available_cpus(cpu_max) == min(2, available_cpus(tmp_path / "absent"))
    cpu_max.write_text("max 100000\n")
    assert cgroup_cpu_limit(cpu_max) is None


def test_session_settings_reach_onnxruntime(tmp_path: Path) -> None:
    options = SessionSettings(intra_op_threads=3, optimized_model_dir=tmp_path).session_options(Path("g_a.onnx"))
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.optimized_model_filepath.endswith("g_a.optimized.onnx")
    assert SessionSettings().session_options(Path("m.onnx")).intra_op_num_threads == available_cpus()
    with pytest.raises(ValueError, match="optimization"):
        SessionSettings(optimization="fastest")


def _link(name: str, **context):
    return codec_named(name).build(CodecContext(**context))


def test_png_and_lossless_webp_are_lossless_and_jpeg_444_keeps_chroma() -> None:
    rng = np.random.default_rng(0)
    images = (rng.integers(0, 256, (3, 3, 32, 32)) / 255.0).astype(np.float32)
    for name in ("png", "webp"):
        np.testing.assert_array_equal(_link(name).decode(_link(name).encode(images), 3), images)
    payload = _link("jpeg", jpeg_quality=90).encode(images)[0]
    assert _link("jpeg", jpeg_quality=90).decode([payload], 1).shape == (1, 3, 32, 32)
    with Image.open(io.BytesIO(payload)) as image:
        assert {component[1:3] for component in image.layer} == {(1, 1)}  # 4:4:4, no chroma subsampling


def test_lossy_webp_is_smaller_at_lower_quality_and_decodes_to_the_same_shape() -> None:
    images = load_evaluation(None).images[:8]
    unit = (images.transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
    sizes = {}
    for quality in (30, 90):
        codec = _link("webp", webp_quality=quality)
        payloads = codec.encode(unit)
        with Image.open(io.BytesIO(payloads[0])) as image:
            assert image.format == "WEBP"
        decoded = codec.decode(payloads, len(payloads))
        assert decoded.shape == unit.shape and 0 < np.abs(decoded - unit).mean() < 0.1
        sizes[quality] = sum(map(len, payloads))
    assert sizes[30] < sizes[90] < sum(map(len, _link("webp").encode(unit)))


def test_every_registered_codec_round_trips_a_batch_through_the_wire_format() -> None:
    bundle = ModelBundle.open()
    context = CodecContext(bundle, g_a=bundle.session("g_a"), g_s=bundle.session("g_s"))
    images = perturb(bundle.session("generator"), preprocess(load_evaluation(None).images[:5]))
    wire_ids = set()
    for name in codecs_for(bundle, DEFAULT_COMPRESSOR):  # a codebook codec where the bundle has a codebook
        codec = codec_named(name).build(context)
        batch = EncodedBatch.from_bytes(EncodedBatch(name, codec.encode(images), len(images)).to_bytes())
        assert batch.codec == name and batch.images == 5 and (len(batch.payloads) == 1) == codec.one_stream
        assert codec.decode(batch.payloads, batch.images).shape == images.shape
        wire_ids.add(codec.wire_id)
    assert len(wire_ids) == len(codecs_for(bundle, DEFAULT_COMPRESSOR))
    with pytest.raises(UnknownCodec, match="choose from"):
        codec_named("gif")


def test_decoding_rejects_non_images_with_a_clear_message() -> None:
    with pytest.raises(NotAnImage) as refused:
        decode_image(b"definitely not a picture")
    assert str(refused.value) == "not a decodable image: expected PNG, JPEG or WEBP"  # words, not a Python repr
    with pytest.raises(NotAnImage, match="image 1"):
        decode_images([_link("png").encode(np.zeros((1, 3, 32, 32), np.float32))[0], b"nope"])
    with pytest.raises(WrongImageSize, match="only 32x32"):
        decode_images([_link("png").encode(np.zeros((1, 3, 8, 8), np.float32))[0]], policy="reject")
    assert decode_images([_link("png").encode(np.zeros((1, 3, 8, 8), np.float32))[0]], policy="resize").shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="quality"):
        _link("jpeg", jpeg_quality=0)


def test_one_stream_per_batch_round_trips_and_pays_the_flush_once() -> None:
    bundle = ModelBundle.open()
    codec = NeuralCodec.of(bundle, DEFAULT_COMPRESSOR, g_a=bundle.session("g_a"))
    data = load_evaluation(None).subset(slice(0, 64))
    latent = codec.analyse(perturb(bundle.session("generator"), preprocess(data.images)))
    per_image = codec.coder.encode(latent)
    batched = codec.coder.encode_batch(latent)
    np.testing.assert_array_equal(codec.coder.decode_batch(batched, len(latent), codec.latent_size),
                                  codec.coder.decode(per_image, codec.latent_size))
    assert len(batched) < sum(len(stream) for stream in per_image) - 2 * (len(latent) - 1)


DECODE_GARBAGE = """
import numpy as np
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.rans import RansCoder
coder = RansCoder(ModelBundle.open().entropy_tables("pmc2"))
rng = np.random.default_rng(0)
streams = [b"", b"\\xff" * 64, bytes(40), rng.bytes(8), rng.bytes(37), b"\\xf0" * 300]
streams += [rng.bytes(int(n)) for n in rng.integers(0, 300, 2000)]
for stream in streams:
    coder.decode([stream], (2, 2))
for images in (1, 256, 1024):  # 8 bytes claiming 1,024 images crashed the unpadded decoder
    for stream in streams[:6]:
        assert coder.decode_batch(stream, images, (2, 2)).shape == (images, 96, 2, 2)
print("survived")
"""


def test_garbage_rans_streams_decode_without_reading_past_the_buffer() -> None:
    """CompressAI's decoder has no bounds checks; the runtime's padding must keep it inside its buffer.
    Run in a child process, so that a crash is a failed test and not a dead test run."""
    result = subprocess.run([sys.executable, "-c", DECODE_GARBAGE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "survived" in result.stdout, (result.returncode, result.stderr[-1000:])


ENCODE_SHORT_STREAMS = """
import numpy as np
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.rans import EntropyTables, RansCoder
tables = ModelBundle.open().entropy_tables("pmc2")
one_channel = RansCoder(EntropyTables(*(array[:1] for array in (tables.quantized_cdf, tables.cdf_length, tables.offset,
                                                                  tables.medians))))
for coder, latent, batch in ((RansCoder(tables), np.zeros((0, 96, 2, 2), np.float32), True),
                             (one_channel, np.zeros((1, 1, 1, 1), np.float32), False),
                             (one_channel, np.zeros((3, 1, 1, 1), np.float32), True)):
    try:
        coder.encode_batch(latent) if batch else coder.encode(latent)
    except ValueError as error:
        assert "too few" in str(error), error
    else:
        raise AssertionError(f"{latent.shape} was encoded")
rarest = int(np.diff(tables.quantized_cdf[0, : tables.cdf_length[0] - 1]).argmin())  # in range, 16 bits
unlikely = np.full((1, 1, 2, 2), tables.offset[0] + rarest + tables.medians[0], np.float32)
stream = one_channel.encode(unlikely)[0]
assert len(stream) <= 4 * 4, len(stream)  # the buffer CompressAI sizes for four symbols
assert (one_channel.decode([stream], (2, 2)) == one_channel.dequantize(one_channel.symbols(unlikely))).all()
print("survived")
"""


def test_streams_too_short_for_compressais_encoder_are_refused_and_four_symbols_fit() -> None:
    """Run in a child process, so that a heap overrun is a failed test and not a dead test run."""
    result = subprocess.run([sys.executable, "-c", ENCODE_SHORT_STREAMS], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "survived" in result.stdout, (result.returncode, result.stderr[-1000:])


def test_a_decoded_bundle_sends_every_link_the_image_the_bitstream_decodes_to(tmp_path: Path) -> None:
    """With the generator's "link_image": "decoded" (the shipped bundle's) the PNG link carries the edge's own decode x̂, the
    same image the cloud decodes from the neural link's bitstream; with "perturbed", it carries x'."""
    bundles = {}
    for link_image in ("perturbed", "decoded"):
        folder = tmp_path / link_image
        shutil.copytree(ModelBundle.open().folder, folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["models"]["generator"]["link_image"] = link_image
        (folder / "manifest.json").write_text(json.dumps(manifest))
        bundles[link_image] = ModelBundle.open(folder)
    pixels = load_evaluation(None).images[:6]
    carried = {}
    for name, bundle in bundles.items():
        edge = EdgeProtector(bundle, SessionSettings(), jpeg_quality=95, webp_quality=None)
        png, neural = edge.protect(pixels, "png", "perturbation"), edge.protect(pixels, "neural", "perturbation")
        carried[name] = edge.link("png", "perturbation").decode(png.batch.payloads, 6)
        cloud_decodes = edge.link("neural", "perturbation").decode(neural.batch.payloads, 6)
        np.testing.assert_array_equal(png.perturbed, neural.perturbed)  # the same x' either way
        if name == "decoded":
            assert np.abs(carried[name] - cloud_decodes).max() <= 0.5 / 255 + 1e-6  # x̂, to the uint8 step
        else:
            assert np.abs(carried[name] - png.perturbed).max() <= 0.5 / 255 + 1e-6  # x' itself
    assert np.abs(carried["decoded"] - carried["perturbed"]).mean() > 0.01

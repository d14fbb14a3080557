"""Codebook index streams (runtime.latent_codebook, the neural-index link): exact, near the indexes' entropy, safe on
corrupt input, and refused with a clear error where a compressor has no codebook."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pmc2.cloud_server.recognition import CloudRecognizer
from pmc2.runtime.cifar10 import load_evaluation, load_split
from pmc2.runtime.compressors import DEFAULT_COMPRESSOR, compressor_named
from pmc2.runtime.edge_protection import EdgeProtector
from pmc2.runtime.latent_codebook import (PRECISION_BITS, CorruptIndexStream, IndexCoder, LatentCodebook,
                                         NotACodebookEntry, entropy_bits, index_table)
from pmc2.runtime.link_codecs import UnknownCodec
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.wire_format import EncodedBatch
from pmc2.export.to_onnx import export_all
from pmc2.training.compressor import CODEBOOK_KEY
from pmc2.training.pairs import DEFAULT_PAIR

SESSIONS = SessionSettings(intra_op_threads=1)


def _codebook(counts: list[int]) -> LatentCodebook:
    entries = np.arange(len(counts) * 8, dtype=np.int16).reshape(len(counts), 2, 2, 2)
    return LatentCodebook(entries, index_table(np.asarray(counts)))


def test_the_index_table_follows_the_counts_and_gives_every_symbol_a_count() -> None:
    table = index_table(np.asarray([6, 3, 1, 0]))
    frequencies = np.diff(table)
    assert table[0] == 0 and table[-1] == 1 << PRECISION_BITS and len(table) == 4 + 2
    assert frequencies.min() >= 1 and frequencies[-1] == 1  # the unseen class and the escape keep one count
    assert frequencies[0] == pytest.approx(2 * frequencies[1], rel=1e-3) == pytest.approx(6 * frequencies[2], rel=1e-3)
    for counts in ([5], [1, -1], [0, 0]):
        with pytest.raises(ValueError, match="counts"):
            index_table(np.asarray(counts))


@pytest.mark.parametrize("images", [1, 2, 3, 4, 5, 256, 4096])
def test_indexes_round_trip_at_about_their_entropy(images: int) -> None:
    coder = IndexCoder(_codebook([5000] * 10))
    indexes = np.random.default_rng(images).integers(0, 10, images).astype(np.int32)
    stream = coder.encode(indexes)
    assert np.array_equal(coder.decode(stream, images), indexes)
    if images >= 256:  # a flush of at most 8 bytes beside log2(10) bits an image
        assert len(stream) <= math.ceil(images * math.log2(10) / 8) + 8


def test_a_skewed_table_codes_its_frequent_entry_below_log2_k() -> None:
    coder = IndexCoder(_codebook([90, 10]))
    indexes = (np.random.default_rng(0).random(4096) < 0.1).astype(np.int32)
    assert len(coder.encode(indexes)) * 8 / 4096 < 1.1 * entropy_bits(indexes) < 1.0


def test_corrupt_index_streams_raise_or_decode_to_entries_and_never_crash() -> None:
    coder, rng = IndexCoder(_codebook([1] * 10)), np.random.default_rng(1)
    for _ in range(300):
        stream = rng.bytes(int(rng.integers(0, 64)))
        try:
            decoded = coder.decode(stream, int(rng.integers(1, 300)))
        except CorruptIndexStream:
            continue
        assert decoded.min() >= 0 and decoded.max() < 10


def test_a_latent_that_is_no_entry_is_named() -> None:
    codebook = _codebook([1, 1, 1])
    symbols = codebook.symbols_at(np.asarray([2, 0, 1, 1]))
    assert codebook.indexes_of(symbols).tolist() == [2, 0, 1, 1]
    symbols[3, 0, 0, 0] += 1
    with pytest.raises(NotACodebookEntry, match=r"images \[3\]"):
        codebook.indexes_of(symbols)


@pytest.fixture(scope="module")
def bundle_with_codebook(tmp_path_factory: pytest.TempPathFactory, shared_cifar: Path) -> ModelBundle:
    """A copy of the shipped bundle exported again with its latent codebook (the shipped manifests gain it with the
    next full evaluation and benchmark run, which measure the bundle they name)."""
    folder = tmp_path_factory.mktemp("codebook") / "bundle"
    shutil.copytree(ModelBundle.open().folder, folder)
    export_all(DEFAULT_PAIR, folder, ("aux",))
    return ModelBundle.open(folder)


def test_the_exported_codebook_is_the_checkpoints_own_in_integers(bundle_with_codebook: ModelBundle,
                                                                 shared_cifar: Path) -> None:
    """Integers only: exporting again on any CPU writes these bytes; the index table follows the public labels."""
    exported = bundle_with_codebook.latent_codebook(DEFAULT_COMPRESSOR)
    stored = torch.load(DEFAULT_PAIR.compressor, weights_only=False)[CODEBOOK_KEY]["symbols"].numpy()
    counts = np.bincount(load_split(shared_cifar, "train").labels, minlength=10)
    assert exported.entries.dtype == np.int16 and np.array_equal(exported.entries, stored)
    assert np.array_equal(exported.index_cdf, index_table(counts))


def test_the_index_link_decodes_what_the_latents_stream_decodes_in_about_half_the_bytes(
        bundle_with_codebook: ModelBundle) -> None:
    edge = EdgeProtector(bundle_with_codebook, SESSIONS, 95, None)
    perturbed = edge.protectors["perturbation"].perturb(load_evaluation(None).images[:256])
    by_latents, by_indexes = edge.link("neural-batch", "perturbation"), edge.link("neural-index", "perturbation")
    latent_stream, index_stream = by_latents.encode(perturbed), by_indexes.encode(perturbed)
    assert np.array_equal(by_indexes.decode(index_stream, 256), by_latents.decode(latent_stream, 256))
    assert len(index_stream[0]) <= math.ceil(256 * math.log2(10) / 8) + 8 < len(latent_stream[0])


def test_a_compressor_without_a_codebook_has_no_index_link_at_the_edge_or_the_cloud(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(ModelBundle.open().folder, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop(compressor_named(DEFAULT_COMPRESSOR).codebook, None)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    bundle = ModelBundle.open(folder)
    assert bundle.latent_codebook(DEFAULT_COMPRESSOR) is None
    assert "neural-index" not in EdgeProtector(bundle, SESSIONS, 95, None).links_of("perturbation")
    batch = EncodedBatch.from_bytes(EncodedBatch("neural-index", [bytes(8)], 3).to_bytes())
    with pytest.raises(UnknownCodec, match="neural-index does not apply to compressor 'pmc2'.*neural-batch"):
        CloudRecognizer(bundle, SESSIONS, 1024).decode(batch)

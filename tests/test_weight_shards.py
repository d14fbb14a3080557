"""Classifier checkpoints split across files below a size limit, checked and joined again when loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pmc2.training.classifiers import build_classifier, load_classifier
from pmc2.training.records import shipping_weights
from pmc2.training.weight_shards import SHARDS_KEY, load_sharded, save_sharded, shard_path

LIMIT = 1_000_000  # tensor bytes per file: FastNet's float16 weights (about 4 MB) take several files


def fastnet_checkpoint() -> dict:
    torch.manual_seed(0)
    return {"name": "fastnet", "state_dict": shipping_weights(build_classifier("fastnet").state_dict())}


def test_a_checkpoint_above_the_limit_is_split_and_joined_again(tmp_path: Path) -> None:
    checkpoint, path = fastnet_checkpoint(), tmp_path / "fastnet.pt"
    written = save_sharded(checkpoint, path, LIMIT)
    assert written[0] == path and len(written) >= 4
    largest = max(tensor.numel() * tensor.element_size() for tensor in checkpoint["state_dict"].values())
    assert all(file.stat().st_size < max(LIMIT, largest) + 64 * 1024 for file in written)  # plus torch's container
    head = torch.load(path, weights_only=False)
    assert sorted(head[SHARDS_KEY]) == sorted(file.name for file in written[1:])
    loaded = load_sharded(path)
    assert list(loaded["state_dict"]) == list(checkpoint["state_dict"]) and SHARDS_KEY not in loaded
    assert all(torch.equal(loaded["state_dict"][key], value) for key, value in checkpoint["state_dict"].items())
    model, images = load_classifier(path), torch.rand(2, 3, 32, 32)
    reference = build_classifier("fastnet")
    reference.load_state_dict(checkpoint["state_dict"])
    assert torch.equal(model(images), reference.eval()(images))


def test_saving_again_in_one_file_leaves_no_stale_shard(tmp_path: Path) -> None:
    path = tmp_path / "fastnet.pt"
    save_sharded(fastnet_checkpoint(), path, LIMIT)
    assert save_sharded(fastnet_checkpoint(), path) == [path]
    assert sorted(tmp_path.iterdir()) == [path] and SHARDS_KEY not in torch.load(path, weights_only=False)


def test_a_shard_that_is_not_the_one_named_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fastnet.pt"
    save_sharded(fastnet_checkpoint(), path, LIMIT)
    data = bytearray(shard_path(path, 1).read_bytes())
    data[-100] ^= 0xFF
    shard_path(path, 1).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"fastnet\.shard1\.pt is not the shard fastnet\.pt names"):
        load_sharded(path)

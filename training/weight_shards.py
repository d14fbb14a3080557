"""Shipped classifier checkpoints split across files that each stay under GitHub's 50 MB warning.

    <name>.pt ─── the checkpoint with the first part of its state_dict, and ``shards``: {file name: SHA-256}
    <name>.shard1.pt, … ─── the rest of the state_dict, in order

A checkpoint that fits in one file is written as one file, as before; the record's checkpoint SHA-256 covers the
first file, and through it every shard's.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from pmc2.training.atomic_files import replace_atomically

SHARD_BYTES = 45_000_000  # tensor bytes per file: below 50 MB with torch's container around them
SHARDS_KEY = "shards"


def shard_path(path: Path, index: int) -> Path:
    return path.with_name(f"{path.stem}.shard{index}{path.suffix}")


def _serialized(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def key_groups(state_dict: dict[str, torch.Tensor], limit: int) -> list[list[str]]:
    """The state_dict's keys in order, cut into runs of at most ``limit`` tensor bytes (a larger tensor alone)."""
    groups: list[list[str]] = [[]]
    size = 0
    for key, tensor in state_dict.items():
        tensor_bytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + tensor_bytes > limit:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += tensor_bytes
    return groups


def save_sharded(checkpoint: dict, path: Path, limit: int = SHARD_BYTES) -> list[Path]:
    """Write ``checkpoint`` (with a ``state_dict``) as ``path`` and as many shards as its size needs, the shards
    first and the file naming them last; then remove shards an earlier save left that it does not name. A save cut
    short leaves a first file whose shards load or are refused, never a silently mixed checkpoint. Returns every
    file written."""
    state_dict = checkpoint["state_dict"]
    first, *rest = key_groups(state_dict, limit)
    shards, digests = [shard_path(path, index) for index in range(1, len(rest) + 1)], {}
    for shard, keys in zip(shards, rest):
        data = _serialized({key: state_dict[key] for key in keys})
        replace_atomically(shard, data)
        digests[shard.name] = hashlib.sha256(data).hexdigest()
    head = {**checkpoint, "state_dict": {key: state_dict[key] for key in first}, **({SHARDS_KEY: digests} if rest else {})}
    replace_atomically(path, _serialized(head))
    for stale in set(path.parent.glob(f"{path.stem}.shard*{path.suffix}")) - set(shards):
        stale.unlink()
    return [path, *shards]


def load_sharded(path: Path) -> dict:
    """The checkpoint ``save_sharded`` wrote (or any single-file one), its state_dict whole again; a shard whose
    SHA-256 is not the one the first file names is refused."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    for name, digest in checkpoint.pop(SHARDS_KEY, {}).items():
        data = (path.parent / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"{path.parent / name} is not the shard {path.name} names: its SHA-256 differs")
        checkpoint["state_dict"].update(torch.load(io.BytesIO(data), map_location="cpu", weights_only=False))
    return checkpoint

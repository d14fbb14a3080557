"""Store a compressor's entropy tables inside its checkpoint, once.

    python -m pmc2.export.store_entropy_tables CHECKPOINT [--from-npz TABLES.npz]

With ``--from-npz`` the tables are copied from an exported bundle (for example the tables the shipped
bitstreams were written with), after checking that its medians are the checkpoint's; without it they
are computed now with CompressAI's ``update()`` from the checkpoint's weights. Either way they are
written into the checkpoint's state dict, where ``load_compressor`` reads them and never recomputes them.
Checkpoints that already hold tables are left alone unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from pmc2.training.compressor import TABLE_BUFFERS, compressor_for
from pmc2.runtime.rans import EntropyTables


def _medians(state_dict: dict) -> np.ndarray:
    return state_dict["entropy_bottleneck.quantiles"][:, 0, 1].float().numpy()


def computed_tables(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The tables CompressAI's ``update()`` gives for this checkpoint's weights on this CPU."""
    model = compressor_for(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    model.update(force=True)
    return {name: getattr(model.entropy_bottleneck, name).clone() for name in TABLE_BUFFERS}


def tables_from_npz(path: Path, checkpoint: dict) -> dict[str, torch.Tensor]:
    tables = EntropyTables.load(path)
    if not np.array_equal(tables.medians, _medians(checkpoint["state_dict"])):
        raise SystemExit(f"{path}'s medians are not this checkpoint's: the tables belong to another compressor")
    return {"_quantized_cdf": torch.from_numpy(tables.quantized_cdf.astype(np.int32)),
            "_offset": torch.from_numpy(tables.offset.astype(np.int32)),
            "_cdf_length": torch.from_numpy(tables.cdf_length.astype(np.int32))}


def store_tables(path: Path, tables: dict[str, torch.Tensor]) -> None:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    for name, table in tables.items():
        checkpoint["state_dict"][f"entropy_bottleneck.{name}"] = table
    torch.save(checkpoint, path)


def has_tables(checkpoint: dict) -> bool:
    return all(checkpoint["state_dict"].get(f"entropy_bottleneck.{name}", torch.empty(0)).numel()
               for name in TABLE_BUFFERS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--from-npz", type=Path, default=None, help="copy the tables from this entropy_bottleneck.npz")
    parser.add_argument("--overwrite", action="store_true", help="replace tables the checkpoint already holds")
    args = parser.parse_args()
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    if has_tables(checkpoint) and not args.overwrite:
        raise SystemExit(f"{args.checkpoint} already holds entropy tables (--overwrite to replace them)")
    tables = tables_from_npz(args.from_npz, checkpoint) if args.from_npz else computed_tables(checkpoint)
    store_tables(args.checkpoint, tables)
    print(f"stored entropy tables in {args.checkpoint} ({'from ' + str(args.from_npz) if args.from_npz else 'computed'})")


if __name__ == "__main__":
    main()

"""Command-line options every trainer shares: --data --epochs --out --resume --seed --limit --threads --init
--batch-size --lr, their defaults from the trainer's config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Protocol

import torch

from pmc2.runtime.paths import SHARED_DATA
from pmc2.value_ranges import positive_int


class SharedDefaults(Protocol):
    """What every trainer's config has: the defaults of the shared options."""

    epochs: int
    seed: int
    batch_size: int
    lr: float


def training_parser(description: str, defaults: SharedDefaults) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="CIFAR-10 folder (npz or cifar-10-batches-py)")
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    parser.add_argument("--out", type=Path, default=Path("checkpoints"))
    parser.add_argument("--resume", action="store_true", help="continue from <out>/<name>.state.pt")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N images (smoke runs)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint's weights (fine-tuning) instead of a random initialisation")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    return parser


def add_bf16_option(parser: argparse.ArgumentParser, default: bool) -> None:
    """``--bf16/--no-bf16`` (``args.bf16``), defaulting to ``default``: a config's, which is the CPU's."""
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=default,
                        help="bf16 autocast (default here: %(default)s, on where the CPU has AMX or AVX-512-BF16)")


def parse_training_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args

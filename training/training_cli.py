"""Command-line options every trainer shares: --data --epochs --out --resume --seed --limit --threads --init."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pmc2.runtime.paths import SHARED_DATA
from pmc2.value_ranges import positive_int


def training_parser(description: str, epochs: int, seed: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="CIFAR-10 folder (npz or cifar-10-batches-py)")
    parser.add_argument("--epochs", type=positive_int, default=epochs)
    parser.add_argument("--out", type=Path, default=Path("checkpoints"))
    parser.add_argument("--resume", action="store_true", help="continue from <out>/<name>.state.pt")
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N images (smoke runs)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint's weights (fine-tuning) instead of a random initialisation")
    return parser


def parse_training_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args

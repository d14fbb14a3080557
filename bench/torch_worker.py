"""Times torch eager (inference_mode) and CompressAI's compress()/decompress() in their own process."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pmc2.bench.timing import median_seconds
from pmc2.training.classifiers import load_classifier
from pmc2.training.compressor import load_compressor
from pmc2.training.generator import PerturbationGenerator, PixelCube, PixelOutput, build_generator, load_generator
from pmc2.value_ranges import positive_int

WIDE_BASE_WIDTH = 32


def wide_generator(checkpoints: Path) -> PixelCube:
    """The shipped generator's architecture at base width 32 (seeded random weights): the scaling point."""
    checkpoint = torch.load(checkpoints / "generator.pt", map_location="cpu", weights_only=False)
    torch.manual_seed(0)
    return build_generator(checkpoint.get("architecture", PerturbationGenerator.architecture), WIDE_BASE_WIDTH).eval()


def build(name: str, checkpoints: Path, compressor: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    if name == "generator":
        return PixelOutput(load_generator(checkpoints / "generator.pt")), (3, 32, 32)
    if name == "generator_base32":
        return PixelOutput(wide_generator(checkpoints)), (3, 32, 32)
    if name in ("g_a", "g_s"):
        model = load_compressor(checkpoints / f"{compressor}.pt")
        channels = model.entropy_bottleneck.channels
        return (model.g_a, (3, 32, 32)) if name == "g_a" else (model.g_s, (channels, 2, 2))
    checkpoint = {"target": "fastnet", "aux": "compact_resnet"}[name]
    return load_classifier(checkpoints / f"{checkpoint}.pt"), (3, 32, 32)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="generator, generator_base32, g_a, g_s, target, aux or codec")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--compressor", default="compressor")
    parser.add_argument("--batch", type=positive_int, required=True)
    parser.add_argument("--repeats", type=positive_int, default=20)
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "codec":
        model = load_compressor(args.checkpoints / f"{args.compressor}.pt")
        images = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        compressed = model.compress(images)
        result = {
            "encode": median_seconds(lambda: model.compress(images), args.repeats),
            "decode": median_seconds(lambda: model.decompress(compressed["strings"], compressed["shape"]), args.repeats),
        }
    else:
        model, shape = build(args.model, args.checkpoints, args.compressor)
        inputs = torch.rand(args.batch, *shape, generator=torch.Generator().manual_seed(0))
        result = {"seconds": median_seconds(lambda: model(inputs), args.repeats)}
    result["torch_threads"] = torch.get_num_threads()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

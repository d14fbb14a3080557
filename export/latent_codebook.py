"""A latent codebook: the edge sends one of K latents, so the cloud can learn the class code and nothing else.

    x' ──g_a──▶ y ──nearest codebook entry (squared L2)──▶ ŷ ∈ {c_1 … c_K} ──rANS──▶ bytes ──g_s──▶ x̂ ∈ K images

An end-to-end generator and compressor leave a few bits per image beyond the class in the latent (several
codes per class), and those bits let an attacker who recomputes views tell same-class pictures apart.
Snapping y to the most frequent code of each class (counted once on the public training images, stored as
integer symbols in the compressor's checkpoint, never recomputed) removes them: every image of a class
that the generator and compressor agree on gets the same bitstream. The snap is part of g_a, so the
exported g_a.onnx carries it and the rANS coder, the wire format and the cloud are unchanged.

    python -m pmc2.export.latent_codebook --pair fastnet     # writes the codebook into the pair's compressor.pt
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pmc2.export.compressor import CODEBOOK_KEY, load_compressor
from pmc2.export.data import denormalize, normalize
from pmc2.export.generator import load_generator
from pmc2.export.pairs import PAIRS
from pmc2.export.records import git_commit, sha256_file
from pmc2.runtime.cifar10 import load_split
from pmc2.runtime.image_codecs import through_phone_jpeg
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.runtime.paths import SHARED_DATA

CHUNK = 500


@torch.inference_mode()
def class_codes(generator, compressor, images_uint8: np.ndarray, labels: np.ndarray,
                phone_quality: int = 90) -> tuple[torch.Tensor, list[float]]:
    """The most frequent rounded latent of each class's images (as the edge receives them), and its share."""
    medians = compressor.entropy_bottleneck._get_medians().detach()
    symbols = []
    for start in tqdm(range(0, len(images_uint8), CHUNK), desc="latent codes of the training images"):
        received = torch.from_numpy(to_unit_nchw(through_phone_jpeg(images_uint8[start : start + CHUNK], phone_quality)))
        perturbed = denormalize(generator(normalize(received))).clamp(0, 1)
        symbols.append(torch.round(compressor.g_a(perturbed) - medians).to(torch.int16))
    symbols = torch.cat(symbols)
    codes, shares = [], []
    for label in range(int(labels.max()) + 1):
        counts = Counter(tuple(code.flatten().tolist()) for code in symbols[torch.from_numpy(labels == label)])
        code, count = counts.most_common(1)[0]
        codes.append(torch.tensor(code, dtype=torch.int16).view(symbols.shape[1:]))
        shares.append(count / counts.total())
    return torch.stack(codes), shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=PAIRS, default=next(iter(PAIRS)))
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="CIFAR-10 folder (its training images)")
    parser.add_argument("--images", type=int, default=20_000, help="training images to count codes on")
    args = parser.parse_args()
    pair = PAIRS[args.pair]
    checkpoint = torch.load(pair.compressor, map_location="cpu", weights_only=False)
    if CODEBOOK_KEY in checkpoint:
        raise SystemExit(f"{pair.compressor} already holds a latent codebook")
    training = load_split(args.data, "train").subset(slice(0, args.images))
    codes, shares = class_codes(load_generator(pair.generator), load_compressor(pair.compressor),
                                training.images, training.labels)
    checkpoint[CODEBOOK_KEY] = codes
    torch.save(checkpoint, pair.compressor)
    record_path = pair.compressor.with_suffix(".record.json")
    record = json.loads(record_path.read_text())
    record[CODEBOOK_KEY] = {"command": f"python -m pmc2.export.latent_codebook --pair {args.pair} --images {args.images}",
                            "git_commit": git_commit(), "images": len(training), "data_sha256": training.sha256(),
                            "share_of_class_images_with_that_code": shares, "checkpoint_sha256_before": record["checkpoint_sha256"]}
    record["checkpoint_sha256"] = sha256_file(pair.compressor)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"codebook of {len(codes)} latents written to {pair.compressor}; share of each class's images with its code: "
          + ", ".join(f"{share:.3f}" for share in shares))


if __name__ == "__main__":
    main()

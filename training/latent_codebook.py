"""A latent codebook: the edge sends one of K latents, so the cloud can learn the class and nothing else.

    x' ──g_a──▶ y ──linear chooser: k = argmax(y·Wᵀ + b)──▶ ŷ = c_k ──rANS──▶ bytes ──g_s──▶ x̂ ∈ K images

An end-to-end generator and compressor leave a few bits per image beyond the class in the latent (several
codes per class), and those bits let an attacker who recomputes views tell same-class pictures apart. The
codebook removes them: entry c_k is the most frequent rounded latent of class k's public training images,
and a linear rule on y (logistic regression on those images' latents, its L2 weight chosen on a held-out
tenth) picks the entry. Then g_s is fine-tuned on the K entries alone (``shape_decoded_entries``) so that
each entry's decoded image looks like no natural picture of its class (mean |SSIM| to them near 0) while
the target still reads its class and the auxiliary model does not; the entries, the entropy model and so
every bitstream stay as they were. Every image the rule puts in class k gets the same bitstream, so what the cloud
receives is a function of the chosen class alone. Counted and fitted once, stored in the compressor's
checkpoint (integer symbols, float rule), never recomputed. The choice is part of g_a, so the exported
g_a.onnx carries it, and the rANS coder, the wire format and the cloud are unchanged.

Note what this makes of the edge: its generator and g_a, trained end to end against the target, now hold a
classifier of their own (the rule's accuracy on the evaluation images is the neural link's accuracy), and
the cloud's target reads the class off one of K fixed images.

    python -m pmc2.training.latent_codebook --pair fastnet     # writes the codebook into the pair's compressor.pt
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from compressai.models import FactorizedPrior
from pytorch_msssim import ssim
from torch import nn
from tqdm import tqdm

from pmc2.training.classifiers import load_classifier
from pmc2.training.compressor import CODEBOOK_KEY, load_compressor
from pmc2.training.data import denormalize, normalize, to_unit
from pmc2.training.generator import load_generator
from pmc2.training.pairs import PAIRS
from pmc2.training.records import git_commit, record_path, sha256_file, shipping_weights
from pmc2.runtime.cifar10 import LabelledImages, load_split
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY, through_phone_jpeg
from pmc2.runtime.normalization import to_uint8_nhwc, to_unit_nchw
from pmc2.runtime.paths import SHARED_DATA
from pmc2.value_ranges import positive_int

CHUNK = 500


WEIGHT_DECAYS = (1e-3, 3e-3, 1e-2, 3e-2)


@torch.inference_mode()
def edge_latents(generator, compressor, images_uint8: np.ndarray, phone_quality: int = PHONE_JPEG_QUALITY) -> torch.Tensor:
    """y = g_a(x') of every image as the edge receives it (the phone's JPEG), [N, M, h, w]."""
    latents = []
    for start in tqdm(range(0, len(images_uint8), CHUNK), desc="latents of the training images"):
        received = torch.from_numpy(to_unit_nchw(through_phone_jpeg(images_uint8[start : start + CHUNK], phone_quality)))
        latents.append(compressor.g_a(denormalize(generator(normalize(received))).clamp(0, 1)))
    return torch.cat(latents)


def class_codes(symbols: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """The most frequent integer latent of each class's images, and the share of the class that has it."""
    codes, shares = [], []
    for label in range(int(labels.max()) + 1):
        counts = Counter(tuple(code.flatten().tolist()) for code in symbols[labels == label])
        code, count = counts.most_common(1)[0]
        codes.append(torch.tensor(code, dtype=torch.int16).view(symbols.shape[1:]))
        shares.append(count / counts.total())
    return torch.stack(codes), shares


def _fit_logistic(features: torch.Tensor, labels: torch.Tensor, weight_decay: float) -> torch.nn.Linear:
    rule = torch.nn.Linear(features.shape[1], int(labels.max()) + 1)
    optimizer = torch.optim.LBFGS(rule.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(rule(features), labels) + weight_decay * rule.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return rule


def fit_chooser(latents: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """A linear rule from flattened y to the class (W [K, D], b [K]), with its L2 weight chosen on a held-out
    tenth and then refitted on everything; also what was tried."""
    features = latents.flatten(1).double()
    mean, std = features.mean(0), features.std(0) + 1e-6
    standardised = (features - mean) / std
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    held_out, fitted = order[: len(order) // 10], order[len(order) // 10 :]
    tried = {}
    for weight_decay in WEIGHT_DECAYS:
        rule = _fit_logistic(standardised[fitted].float(), labels[fitted], weight_decay)
        tried[weight_decay] = 100 * float((rule(standardised[held_out].float()).argmax(1) == labels[held_out]).float().mean())
    chosen = max(tried, key=tried.get)
    rule = _fit_logistic(standardised.float(), labels, chosen)
    weight = rule.weight.detach().double() / std  # the standardisation folded into the rule
    bias = rule.bias.detach().double() - weight @ mean
    return weight.float(), bias.float(), {"held_out_accuracy_by_weight_decay": tried, "weight_decay": chosen}


@dataclass(frozen=True)
class CodeShaping:
    """How g_s is fine-tuned on the entries (Adam on g_s's weights; the entries and the entropy model stay)."""

    steps: int = 150
    lr: float = 1e-3
    similarity_weight: float = 20.0  # on the mean |SSIM| between an entry's image and its class's images
    aux_margin: float = 2.0  # the aux model's logit of the entry's class stays this far below its best other
    images_per_class: int = 200
    seed: int = 0


def entry_images(compressor: FactorizedPrior, symbols: torch.Tensor) -> torch.Tensor:
    """What g_s makes of each entry, [K, 3, H, W] in [0, 1] (differentiable in g_s's weights)."""
    return compressor.g_s(symbols.float() + compressor.entropy_bottleneck._get_medians()).clamp(0, 1)


def decoded_entry_terms(compressor: FactorizedPrior, target: nn.Module, aux: nn.Module, symbols: torch.Tensor,
                   class_images: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per entry: its decoded image's mean |SSIM| to its class's images, the target's CE and whether it reads the
    class, and how far the aux model's logit of the class lies above its best other."""
    decoded = entry_images(compressor, symbols)
    classes = torch.arange(len(symbols))
    similarity = torch.stack([ssim(images, decoded[k : k + 1].expand_as(images), data_range=1.0, size_average=False).abs().mean()
                              for k, images in enumerate(class_images)])
    target_logits, aux_logits = target(normalize(decoded)), aux(normalize(decoded))
    best_other_aux = aux_logits.scatter(1, classes[:, None], float("-inf")).amax(1)
    return {"abs_ssim": similarity, "target_ce": nn.functional.cross_entropy(target_logits, classes, reduction="none"),
            "aux_gap": aux_logits[classes, classes] - best_other_aux,
            "target_reads": target_logits.argmax(1) == classes, "aux_reads": aux_logits.argmax(1) == classes}


@contextmanager
def decoder_in_training(compressor: FactorizedPrior, lr: float) -> Iterator[torch.optim.Optimizer]:
    """Within: g_s alone trainable, by the Adam optimiser given; after: g_s frozen at float16 precision, as it ships."""
    compressor.requires_grad_(False)
    compressor.g_s.requires_grad_(True)
    yield torch.optim.Adam(compressor.g_s.parameters(), lr=lr)
    compressor.g_s.load_state_dict(shipping_weights(compressor.g_s.state_dict()))
    compressor.g_s.float().requires_grad_(False)


def shape_decoded_entries(compressor: FactorizedPrior, target: nn.Module, aux: nn.Module, symbols: torch.Tensor,
                          public_unit: torch.Tensor, public_labels: torch.Tensor, config: CodeShaping = CodeShaping()) -> dict:
    """Fine-tune g_s (in place) so that each entry's decoded image resembles no natural image of its class
    (|SSIM| → 0) while the target reads the class and the aux model does not. The entries, and so every
    bitstream, stay as they are; g_s is kept at float16 precision, as it ships. Returns before/after per entry."""
    generator = torch.Generator().manual_seed(config.seed)
    class_images = [public_unit[public_labels == k][torch.randperm(int((public_labels == k).sum()), generator=generator)
                                                   [: config.images_per_class]] for k in range(len(symbols))]
    with torch.no_grad():
        before = decoded_entry_terms(compressor, target, aux, symbols, class_images)
    with decoder_in_training(compressor, config.lr) as optimizer:
        for _ in tqdm(range(config.steps), desc="shaping the entries' decoded images"):
            terms = decoded_entry_terms(compressor, target, aux, symbols, class_images)
            loss = (terms["target_ce"] + config.similarity_weight * terms["abs_ssim"]
                    + torch.relu(terms["aux_gap"] + config.aux_margin)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        after = decoded_entry_terms(compressor, target, aux, symbols, class_images)
    return {"config": asdict(config), **{name: {"before": before[name].float().tolist(), "after": after[name].float().tolist()}
                                         for name in ("abs_ssim", "target_reads", "aux_reads")}}


def fit_decoded_entries(compressor: FactorizedPrior, symbols: torch.Tensor, goals: torch.Tensor, steps: int = 1500,
                        lr: float = 3e-3) -> float:
    """Fine-tune g_s (in place, kept at float16 as it ships) so that entry k decodes to ``goals[k]`` ([0, 1]
    images); returns the largest remaining difference, in uint8 levels."""
    with decoder_in_training(compressor, lr) as optimizer:
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for _ in tqdm(range(steps), desc="fitting g_s to the entries' images"):
            loss = nn.functional.mse_loss(entry_images(compressor, symbols), goals)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        return float((entry_images(compressor, symbols) - goals).abs().max()) * 255


def choose_codebook(generator: nn.Module, compressor: FactorizedPrior, training: LabelledImages) -> tuple[dict, dict]:
    """The codebook of ``training``'s images (entries, chooser rule) and what its record keeps of the choice."""
    latents = edge_latents(generator, compressor, training.images)
    labels = torch.from_numpy(training.labels).long()
    symbols = torch.round(latents - compressor.entropy_bottleneck._get_medians().detach()).to(torch.int16)
    codes, shares = class_codes(symbols, labels)
    weight, bias, fitting = fit_chooser(latents, labels)
    return {"symbols": codes, "weight": weight, "bias": bias}, {"share_of_class_images_with_that_code": shares, **fitting}


def unit_images(training: LabelledImages) -> tuple[torch.Tensor, torch.Tensor]:
    """[0, 1] NCHW images and int64 labels, as ``shape_decoded_entries`` takes them."""
    return to_unit(torch.from_numpy(training.images).permute(0, 3, 1, 2)), torch.from_numpy(training.labels).long()


@torch.inference_mode()
def decoded_entries(compressor: FactorizedPrior, symbols: torch.Tensor) -> np.ndarray:
    """The image the cloud decodes for each entry, as uint8 HWC (what a PNG link would carry)."""
    return to_uint8_nhwc(entry_images(compressor, symbols).numpy())


def store_codebook(compressor_path: Path, compressor: FactorizedPrior, codebook: dict, provenance: dict) -> None:
    """Write the codebook and the shaped g_s into the checkpoint, and ``provenance`` into its record."""
    checkpoint = torch.load(compressor_path, map_location="cpu", weights_only=False)
    checkpoint["state_dict"] |= {f"g_s.{name}": value for name, value in shipping_weights(compressor.g_s.state_dict()).items()}
    checkpoint[CODEBOOK_KEY] = codebook
    torch.save(checkpoint, compressor_path)
    record_file = record_path(compressor_path)
    record = json.loads(record_file.read_text())
    before = record.get(CODEBOOK_KEY, {}).get("checkpoint_sha256_before", record["checkpoint_sha256"])
    record[CODEBOOK_KEY] = {**provenance, "checkpoint_sha256_before": before}
    record["checkpoint_sha256"] = sha256_file(compressor_path)
    record_file.write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=PAIRS, default=next(iter(PAIRS)))
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="CIFAR-10 folder (its training images)")
    parser.add_argument("--images", type=positive_int, default=20_000, help="training images to count codes and fit the rule on")
    parser.add_argument("--overwrite", action="store_true", help="replace a codebook the checkpoint already holds")
    args = parser.parse_args()
    pair = PAIRS[args.pair]
    if CODEBOOK_KEY in torch.load(pair.compressor, map_location="cpu", weights_only=False) and not args.overwrite:
        raise SystemExit(f"{pair.compressor} already holds a latent codebook (--overwrite to replace it)")
    training = load_split(args.data, "train").subset(slice(0, args.images))
    compressor = load_compressor(pair.compressor, with_codebook=False)
    codebook, found = choose_codebook(load_generator(pair.generator), compressor, training)
    shaping = shape_decoded_entries(compressor, load_classifier(pair.target), load_classifier(pair.aux),
                                    codebook["symbols"], *unit_images(training))
    store_codebook(pair.compressor, compressor, codebook, {
        "command": f"python -m pmc2.training.latent_codebook --pair {args.pair} --images {args.images}",
        "git_commit": git_commit(), "images": len(training), "data_sha256": training.sha256(), **found,
        "shaping": shaping})
    print(f"codebook of {len(codebook['symbols'])} latents written to {pair.compressor}; rule's held-out accuracy by "
          f"L2 weight: {found['held_out_accuracy_by_weight_decay']}; entries' decoded images, mean |SSIM| to their "
          f"class: {np.mean(shaping['abs_ssim']['before']):.3f} → {np.mean(shaping['abs_ssim']['after']):.3f}")


if __name__ == "__main__":
    main()

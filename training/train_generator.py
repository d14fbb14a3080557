"""Train an image-to-image protector against a frozen target and auxiliary classifier.

The MMSys'22 generator by default; ``--architecture dapter --objective dapter`` trains DAPter's converter
with its own loss instead (the related system, compared under the same attacks).

AdamW (lr 5e-3, wd 5e-4), linear warm-up then cosine decay per step, flip + translate augmentation, bf16
autocast where the CPU has it; ``--phone-jpeg Q`` trains and validates on the images as the edge receives them
(after the phone's JPEG at quality Q, as the end-to-end recipe does) instead of the stored ones; after every
epoch the loss on the 5,000 validation images decides the best epoch, whose weights are written to
``--out/generator.pt`` with a record (as MMSys'22).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pmc2.training.classifiers import load_target_and_aux
from pmc2.training.data import as_received_tensors, batches, seeded_training_data
from pmc2.training.generator import GENERATORS, PerturbationGenerator, UNetTrainingConfig, build_generator
from pmc2.training.loop import fit
from pmc2.training.perturbation_loss import (OBJECTIVES, PerturbationLossConfig, ProtectorOutputs, per_image_ssim,
                                           perturbation_loss)
from pmc2.training.records import RunLog, load_initial_weights, shipping_weights
from pmc2.training.training_cli import add_bf16_option, parse_training_args, training_parser
from pmc2.value_ranges import jpeg_quality


@dataclass
class GeneratorConfig(UNetTrainingConfig):
    architecture: str = PerturbationGenerator.architecture
    epochs: int = 12
    lr: float = 5e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    limit: int | None = None
    phone_jpeg: int | None = None
    loss: PerturbationLossConfig = field(default_factory=PerturbationLossConfig)


def warmup_cosine(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class PerturbationStep:
    """One forward pass of generator, target and auxiliary model, returning the loss terms."""

    def __init__(self, generator, target, aux, config: GeneratorConfig) -> None:
        self.generator, self.target, self.aux, self.config = generator, target, aux, config

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, measure_all: bool = True) -> dict[str, torch.Tensor]:
        """``measure_all``: also the auxiliary classifier and SSIM when the objective does not train on them."""
        with_aux = measure_all or OBJECTIVES[self.config.loss.objective].uses_aux
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
            perturbed = self.generator(images)
            target_logits = self.target(perturbed)
            aux_logits = self.aux(perturbed) if with_aux else None
        similarity = per_image_ssim(images, perturbed) if with_aux else None
        terms = perturbation_loss(self.config.loss,
                                  ProtectorOutputs(perturbed, target_logits, aux_logits, labels, similarity))
        terms["target_correct"] = (target_logits.argmax(1) == labels).sum()
        if with_aux:
            terms["aux_correct"] = (aux_logits.argmax(1) == labels).sum()
            terms["abs_ssim_sum"] = similarity.abs().sum()
        return terms


@torch.inference_mode()
def validate(step: PerturbationStep, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    step.generator.eval()
    sums = {"loss": 0.0, "target_correct": 0.0, "aux_correct": 0.0, "abs_ssim_sum": 0.0}
    for batch, batch_labels in batches(images, labels, 500):
        terms = step(batch, batch_labels)
        sums["loss"] += terms["loss"].item() * len(batch_labels)
        for key in ("target_correct", "aux_correct", "abs_ssim_sum"):
            sums[key] += terms[key].item()
    n = len(labels)
    return {
        "validation_loss": sums["loss"] / n,
        "validation_target_accuracy": 100 * sums["target_correct"] / n,
        "validation_aux_accuracy": 100 * sums["aux_correct"] / n,
        "validation_abs_ssim": sums["abs_ssim_sum"] / n,
    }


def train(config: GeneratorConfig, data: Path, target_path: Path, aux_path: Path, out: Path, resume: bool,
          init: Path | None = None) -> dict:
    train_set, validation = seeded_training_data(data, config.seed, config.limit)
    train_images, train_labels = as_received_tensors(train_set, config.phone_jpeg)
    val_images, val_labels = as_received_tensors(validation, config.phone_jpeg)
    target, aux = load_target_and_aux(target_path, aux_path)
    generator = build_generator(config.architecture, config.base_width)
    origin = load_initial_weights(generator, init) if init else None
    generator = generator.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(generator.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_images) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(config.epochs * steps_per_epoch, max(1, int(config.warmup_epochs * steps_per_epoch))),
    )
    rng = torch.Generator().manual_seed(config.seed)
    forward = PerturbationStep(generator, target, aux, config)
    log = RunLog(out, "generator", train_set.sha256(),
                 {**asdict(config), "target": str(target_path), "aux": str(aux_path), "init": origin})

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        terms = forward(*batch, measure_all=False)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        scheduler.step()
        return {key: terms[key].item() for key in ("loss", "target_ce", "aux_ce", "similarity", "grey_l1") if key in terms}

    def save(best: dict) -> list[Path]:
        checkpoint = out / "generator.pt"
        torch.save({"architecture": config.architecture, "base_width": config.base_width,
                    "state_dict": shipping_weights(generator.state_dict()), "target": str(target_path),
                    "aux": str(aux_path), "epoch": best["epoch"]}, checkpoint)
        return [checkpoint]

    return fit(
        log, {"generator": generator, "optimizer": optimizer, "scheduler": scheduler, "rng": rng}, resume,
        epochs=config.epochs, steps_per_epoch=steps_per_epoch,
        epoch_batches=lambda _epoch: batches(train_images, train_labels, config.batch_size, rng, augment=True),
        step=step, validate=lambda: validate(forward, val_images, val_labels), save=save, keep_best_by="validation_loss",
    )


def main() -> None:
    defaults, loss_defaults = GeneratorConfig(), PerturbationLossConfig()
    parser = training_parser(__doc__.splitlines()[0], defaults)
    parser.add_argument("--target", type=Path, default=Path("checkpoints/fastnet.pt"))
    parser.add_argument("--aux", type=Path, default=Path("checkpoints/compact_resnet.pt"))
    parser.add_argument("--architecture", choices=GENERATORS, default=defaults.architecture)
    parser.add_argument("--objective", choices=OBJECTIVES, default=loss_defaults.objective,
                        help="mmsys22 (target/aux/similarity, below) or dapter (λ·L1 to grey + (1−λ)·target CE)")
    parser.add_argument("--dapter-lambda", type=float, default=loss_defaults.dapter_lambda)
    parser.add_argument("--base-width", type=int, default=defaults.base_width)
    parser.add_argument("--target-weight", type=float, default=loss_defaults.target_weight)
    parser.add_argument("--aux-weight", type=float, default=loss_defaults.aux_weight)
    parser.add_argument("--similarity-weight", type=float, default=loss_defaults.similarity_weight)
    parser.add_argument("--aux-term", choices=("neg-ce", "hinge"), default=loss_defaults.aux_term)
    parser.add_argument("--aux-margin", type=float, default=loss_defaults.aux_margin)
    parser.add_argument("--similarity", choices=("signed", "abs"), default=loss_defaults.similarity)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--warmup-epochs", type=float, default=defaults.warmup_epochs)
    parser.add_argument("--phone-jpeg", type=jpeg_quality, default=None, metavar="Q",
                        help="train on the images after the phone's JPEG at quality Q (default: as stored)")
    add_bf16_option(parser, defaults.bf16)
    args = parse_training_args(parser)
    loss = PerturbationLossConfig(
        args.target_weight, args.aux_weight, args.similarity_weight, args.aux_term, args.aux_margin, args.similarity,
        args.objective, args.dapter_lambda,
    )
    config = GeneratorConfig(
        architecture=args.architecture, base_width=args.base_width, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, bf16=args.bf16, seed=args.seed,
        limit=args.limit, phone_jpeg=args.phone_jpeg, loss=loss,
    )
    train(config, args.data, args.target, args.aux, args.out, args.resume, args.init)


if __name__ == "__main__":
    main()

"""Train a CIFAR-10 classifier on the CPU (default target: fastnet; default auxiliary: compact_resnet).

Recipe: Nesterov SGD, label smoothing, linear warm-up then linear decay, flip + 2-px translation, bf16 autocast
where the CPU has it in hardware. Resumable from the per-epoch state file; the final weights and their record go to
--out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from pmc2.machine import bf16_is_fast
from pmc2.training.classifiers import build_classifier
from pmc2.training.data import as_tensors, batches, erase_squares, normalize, seeded_training_data, to_unit
from pmc2.training.fast_classifiers import FastNet
from pmc2.training.loop import fit
from pmc2.training.records import RunLog, load_initial_weights, shipping_weights
from pmc2.training.weight_shards import save_sharded
from pmc2.training.training_cli import add_bf16_option, parse_training_args, training_parser
from pmc2.runtime.cifar10 import LabelledImages


@dataclass
class ClassifierConfig:
    model: str = "fastnet"
    epochs: int = 12
    batch_size: int = 512
    lr: float = 0.4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    warmup_fraction: float = 0.2
    bf16: bool = field(default_factory=bf16_is_fast)  # bf16 autocast where the CPU has it in hardware
    cutout: int = 0  # side of a random square erased from every training image (0: none)
    max_shift: int = 2  # random translation in pixels (4: PyTorch_CIFAR10's 4-pixel padded crop)
    seed: int = 0
    limit: int | None = None


def triangular_schedule(total_steps: int, warmup_fraction: float) -> callable:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return 0.2 + 0.8 * step / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def make_optimizer(model: nn.Module, config: ClassifierConfig) -> torch.optim.SGD:
    """Weight decay on conv/linear weights only; BN shifts and biases are not decayed."""
    decayed = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    plain = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decayed, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy (%) of ``model`` on uint8 NCHW images."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(normalize(to_unit(images[start : start + batch_size])))
        correct += (logits.argmax(1) == labels[start : start + batch_size]).sum().item()
    return 100.0 * correct / len(images)


def train(config: ClassifierConfig, data: Path, out: Path, resume: bool, init: Path | None = None) -> dict:
    """Train on ``data``'s training split with its labels, validated on its validation images."""
    return train_on(config, *seeded_training_data(data, config.seed, config.limit), out, resume, init)


def train_on(config: ClassifierConfig, train_set: LabelledImages, validation: LabelledImages, out: Path, resume: bool,
             init: Path | None = None) -> dict:
    """Train on ``train_set`` (any labels: the public ones, or a target's answers), validated on ``validation``."""
    train_images, train_labels = as_tensors(train_set)
    val_images, val_labels = as_tensors(validation)

    model = build_classifier(config.model)
    if init:
        origin = load_initial_weights(model, init)
    else:
        origin = None
        if isinstance(model, FastNet):
            model.init_whitening(normalize(to_unit(train_images[:5000])))
    model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = -(-len(train_images) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, triangular_schedule(config.epochs * steps_per_epoch, config.warmup_fraction)
    )
    generator = torch.Generator().manual_seed(config.seed)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    log = RunLog(out, config.model, train_set.sha256(), {**asdict(config), "init": origin})

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        images, labels = batch
        if config.cutout:
            images = erase_squares(images, config.cutout, generator)
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            logits = model(images)
            loss = criterion(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"loss": loss.item(), "accuracy": 100 * (logits.argmax(1) == labels).sum().item() / len(labels)}

    def save(_last_epoch: dict) -> list[Path]:
        checkpoint = out / f"{config.model}.pt"
        save_sharded({"name": config.model, "state_dict": shipping_weights(model.state_dict())}, checkpoint)
        return [checkpoint]  # its record's SHA-256 covers the shards' too (weight_shards)

    return fit(
        log, {"model": model, "optimizer": optimizer, "scheduler": scheduler, "generator": generator}, resume,
        epochs=config.epochs, steps_per_epoch=steps_per_epoch,
        epoch_batches=lambda _epoch: batches(train_images, train_labels, config.batch_size, generator, augment=True,
                                             max_shift=config.max_shift),
        step=step, validate=lambda: {"validation_accuracy": accuracy(model, val_images, val_labels)}, save=save,
        batch_weight=lambda batch: len(batch[1]),  # the epoch's means are over images, not batches
    )


def main() -> None:
    defaults = ClassifierConfig()
    parser = training_parser(__doc__.splitlines()[0], defaults)
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    add_bf16_option(parser, defaults.bf16)
    parser.add_argument("--cutout", type=int, default=defaults.cutout,
                        help="erase a random square of this side from every training image (judges use 12)")
    parser.add_argument("--max-shift", type=int, default=defaults.max_shift,
                        help="random translation in pixels (4 matches PyTorch_CIFAR10's padded crop)")
    parser.add_argument("--warmup-fraction", type=float, default=defaults.warmup_fraction)
    args = parse_training_args(parser)
    config = ClassifierConfig(
        model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, bf16=args.bf16, cutout=args.cutout,
        max_shift=args.max_shift, warmup_fraction=args.warmup_fraction,
        seed=args.seed, limit=args.limit,
    )
    train(config, args.data, args.out, args.resume, args.init)


if __name__ == "__main__":
    main()

"""Train the generator and the compressor together, with the bitstream's rate in the loss.

The edge's input is the phone's JPEG (quality 90) of each training image, flipped and translated.
The objective is ``end_to_end_objective`` (target CE on x̂, rate, aux hinge on shifted/erased x̂, an
inverse-network adversary trained alongside). λ warms up linearly over ``--rate-warmup-epochs``; learning
rates warm up for 200 steps, then decay on a cosine. bf16 autocast (where the CPU has it) for the networks,
float32 for the compressor. After each epoch the validation images are coded as the runtime codes them
(rounded latent; bits = −log2 of their likelihoods) and the best epoch's generator and compressor go to
``--out/{generator,compressor}.pt``; the compressor's entropy tables are computed there, once.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pmc2.machine import bf16_is_fast
from pmc2.training.classifiers import load_classifier, load_target_and_aux
from pmc2.training.compressor import CPU_M, CPU_N, build_compressor, clear_entropy_tables, save_compressor
from pmc2.training.data import (as_received_tensors, class_mean_images, denormalize, flip_and_translate, normalize,
                              seeded_training_data, to_unit)
from pmc2.training.end_to_end_objective import (EndToEndLossConfig, EndToEndObjective, InverseNetwork, per_image_mse,
                                              shift_and_erase)
from pmc2.training.generator import FeatureUNet, build_generator
from pmc2.training.perturbation_loss import per_image_ssim
from pmc2.training.loop import fit, shuffled
from pmc2.training.records import RunLog, load_initial_weights, shipping_weights
from pmc2.training.train_generator import warmup_cosine
from pmc2.training.training_cli import add_bf16_option, parse_training_args, training_parser
from pmc2.runtime.cifar10 import LabelledImages

LINK_IMAGE = {"decoded": "decoded", "distortion": "perturbed"}  # tie → the image the PNG/JPEG links carry
LR_WARMUP_STEPS = 200


@dataclass
class EndToEndConfig:
    architecture: str = FeatureUNet.architecture
    base_width: int = 16
    n: int = CPU_N
    m: int = CPU_M
    epochs: int = 8
    batch_size: int = 128
    lr: float = 5e-4
    compressor_lr: float = 3e-4
    quantile_lr: float = 1e-3
    inverse_lr: float = 1e-3
    weight_decay: float = 5e-4
    rate_warmup_epochs: float = 2.0
    clip: float = 1.0
    bf16: bool = field(default_factory=bf16_is_fast)  # bf16 autocast where the CPU has it in hardware
    seed: int = 0
    limit: int | None = None
    loss: EndToEndLossConfig = field(default_factory=EndToEndLossConfig)


@torch.inference_mode()
def validate(objective: EndToEndObjective, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Code the images as the runtime does (rounded latent) and measure accuracy, bits, aux and leakage."""
    objective.generator.eval(), objective.compressor.eval(), objective.inverse.eval()
    config, sums = objective.config, dict.fromkeys(
        ("loss", "bits", "target", "aux", "aux_erased", "abs_ssim", "inverse_mse", "label_only_mse"), 0.0)
    rng = torch.Generator().manual_seed(0)
    for start in range(0, len(images), 500):
        unit, batch_labels = to_unit(images[start : start + 500]), labels[start : start + 500]
        perturbed = denormalize(objective.generator(normalize(unit)).float()).clamp(0, 1)
        output = objective.compressor(perturbed)
        decoded = output["x_hat"].clamp(0, 1)
        bits = -torch.log2(output["likelihoods"]["y"]).flatten(1).sum(1)
        target_logits = objective.target(normalize(decoded))
        ce = torch.nn.functional.cross_entropy(target_logits, batch_labels, reduction="sum")
        sums["loss"] += (config.target_weight * ce + config.rate_weight * bits.sum()).item()
        sums["bits"] += bits.sum().item()
        sums["target"] += (target_logits.argmax(1) == batch_labels).sum().item()
        sums["aux"] += (objective.aux(normalize(decoded)).argmax(1) == batch_labels).sum().item()
        erased = shift_and_erase(decoded, config.erase_size, rng)
        sums["aux_erased"] += (objective.aux(normalize(erased)).argmax(1) == batch_labels).sum().item()
        sums["abs_ssim"] += per_image_ssim(normalize(unit), normalize(decoded)).abs().sum().item()
        sums["inverse_mse"] += per_image_mse(objective.inverse(decoded), unit).sum().item()
        sums["label_only_mse"] += per_image_mse(objective.class_means[batch_labels], unit).sum().item()
    n = len(images)
    means = {key: value / n for key, value in sums.items()}
    return {
        "validation_loss": means["loss"], "validation_bytes_ideal": means["bits"] / 8,
        "validation_target_accuracy": 100 * means["target"], "validation_aux_accuracy": 100 * means["aux"],
        "validation_aux_accuracy_shift_erase": 100 * means["aux_erased"], "validation_abs_ssim": means["abs_ssim"],
        "validation_inverse_mse": means["inverse_mse"], "validation_label_only_mse": means["label_only_mse"],
    }



def build_models(config: EndToEndConfig, generator_init: Path | None,
                 encoder_init: Path | None, compressor_init: Path | None):
    """Generator (from a checkpoint, or with FastNet's trained features as its contracting path) and compressor."""
    generator = build_generator(config.architecture, config.base_width)
    origins = {}
    if generator_init:
        origins["generator"] = load_initial_weights(generator, generator_init)
    elif encoder_init:
        encoder = load_classifier(encoder_init)
        generator.init_from_fastnet(encoder)
        origins["encoder"] = str(encoder_init)
    compressor = build_compressor(config.n, config.m)
    if compressor_init:
        origins["compressor"] = load_initial_weights(compressor, compressor_init)
    return generator, compressor, origins


def train(config: EndToEndConfig, data: Path, target_path: Path, aux_path: Path, out: Path, resume: bool,
          generator_init: Path | None = None, encoder_init: Path | None = None,
          compressor_init: Path | None = None) -> dict:
    """Train against the target and aux checkpoints, on ``data``'s training split."""
    train_set, validation = seeded_training_data(data, config.seed, config.limit)
    target, aux = load_target_and_aux(target_path, aux_path)
    return train_on(config, train_set, validation, target, aux, {"target": str(target_path), "aux": str(aux_path)},
                    out, resume, generator_init, encoder_init, compressor_init)


def train_on(config: EndToEndConfig, train_set: LabelledImages, validation: LabelledImages, target: torch.nn.Module,
             aux: torch.nn.Module, sources: dict[str, str], out: Path, resume: bool, generator_init: Path | None = None,
             encoder_init: Path | None = None, compressor_init: Path | None = None) -> dict:
    """Train against ``target`` and ``aux`` (frozen modules, normalised images → logits; ``sources`` says in the
    record and the checkpoints what they are), on ``train_set``'s images and labels."""
    train_images, train_labels = as_received_tensors(train_set)
    val_images, val_labels = as_received_tensors(validation)
    generator, compressor, origins = build_models(config, generator_init, encoder_init, compressor_init)
    generator = generator.to(memory_format=torch.channels_last)
    inverse = InverseNetwork()
    objective = EndToEndObjective(config.loss, generator, compressor, target, aux, inverse,
                                  class_mean_images(train_images, train_labels), config.bf16)

    compressor_main = [p for name, p in compressor.named_parameters() if not name.endswith(".quantiles")]
    quantiles = [p for name, p in compressor.named_parameters() if name.endswith(".quantiles")]
    trained = [*generator.parameters(), *compressor_main]
    optimizer = torch.optim.AdamW([
        {"params": list(generator.parameters()), "lr": config.lr},
        {"params": compressor_main, "lr": config.compressor_lr, "weight_decay": 0.0},
    ], weight_decay=config.weight_decay)
    quantile_optimizer = torch.optim.Adam(quantiles, lr=config.quantile_lr)
    inverse_optimizer = torch.optim.Adam(inverse.parameters(), lr=config.inverse_lr)
    steps_per_epoch = -(-len(train_images) // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, LR_WARMUP_STEPS))
    rng = torch.Generator().manual_seed(config.seed)
    log = RunLog(out, "end_to_end", train_set.sha256(),
                 {**asdict(config), **sources, "init": origins})
    if resume:  # the training state's tables (if any) replace those of the initial weights
        clear_entropy_tables(compressor)
    rate_warmup_steps = max(1, int(config.rate_warmup_epochs * steps_per_epoch))

    def edge_batches(epoch: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """The epoch's flipped and translated [0, 1] batches, each with the number of steps taken before it."""
        for step_number, (images, labels) in enumerate(shuffled(train_images, train_labels, config.batch_size, rng),
                                                        start=epoch * steps_per_epoch):
            yield step_number, to_unit(flip_and_translate(images, rng)).contiguous(memory_format=torch.channels_last), labels

    def step(batch: tuple[int, torch.Tensor, torch.Tensor]) -> dict[str, float]:
        step_number, images, labels = batch
        terms = objective(images, labels, min(1.0, step_number / rate_warmup_steps), rng)
        optimizer.zero_grad(set_to_none=True)
        quantile_optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trained, config.clip)
        optimizer.step()
        scheduler.step()
        compressor.aux_loss().backward()
        quantile_optimizer.step()
        inverse_optimizer.zero_grad(set_to_none=True)
        inverse_mse = objective.inverse_loss(terms["decoded"], images)
        inverse_mse.backward()
        inverse_optimizer.step()
        values = {key: terms[key].item() for key in ("loss", "bits", "target_ce", "aux_ce", "leak")}
        return values | {"inverse_mse": inverse_mse.item(), "target_acc": terms["target_correct"].item() / len(labels)}

    return fit(
        log, {"generator": generator, "compressor": compressor, "inverse": inverse, "optimizer": optimizer,
              "quantile_optimizer": quantile_optimizer, "inverse_optimizer": inverse_optimizer,
              "scheduler": scheduler, "rng": rng},
        resume, epochs=config.epochs, steps_per_epoch=steps_per_epoch, epoch_batches=edge_batches, step=step,
        validate=lambda: validate(objective, val_images, val_labels),
        save=lambda best: save_checkpoints(config, generator, compressor, out, best, sources),
        keep_best_by="validation_loss",
    )


def save_checkpoints(config: EndToEndConfig, generator, compressor, out: Path, best: dict,
                     sources: dict[str, str]) -> list[Path]:
    """The best epoch's generator and compressor (entropy tables computed here, once)."""
    generator_path = out / "generator.pt"
    torch.save({"architecture": config.architecture, "base_width": config.base_width,
                "link_image": LINK_IMAGE[config.loss.tie],
                "state_dict": shipping_weights(generator.state_dict()), **sources, "epoch": best["epoch"]}, generator_path)
    compressor_path = out / "compressor.pt"
    save_compressor(copy.deepcopy(compressor), compressor_path, {"loss": "end_to_end", "generator": str(generator_path),
                                                                 "epoch": best["epoch"]})
    return [generator_path, compressor_path]


def main() -> None:
    defaults, loss_defaults = EndToEndConfig(), EndToEndLossConfig()
    parser = training_parser(__doc__.splitlines()[0], defaults)
    parser.add_argument("--target", type=Path, default=Path("checkpoints/fastnet.pt"))
    parser.add_argument("--aux", type=Path, default=Path("checkpoints/compact_resnet.pt"))
    parser.add_argument("--encoder-init", type=Path, default=Path("checkpoints/fastnet.pt"),
                        help="a trained FastNet whose features start the feature_unet's contracting path")
    parser.add_argument("--compressor-init", type=Path, default=Path("checkpoints/compressor.pt"))
    parser.add_argument("--architecture", default=defaults.architecture)
    parser.add_argument("--base-width", type=int, default=defaults.base_width)
    parser.add_argument("--compressor-lr", type=float, default=defaults.compressor_lr)
    parser.add_argument("--rate-warmup-epochs", type=float, default=defaults.rate_warmup_epochs)
    parser.add_argument("--rate-weight", type=float, default=loss_defaults.rate_weight, help="λ per bit")
    parser.add_argument("--aux-weight", type=float, default=loss_defaults.aux_weight)
    parser.add_argument("--inverse-weight", type=float, default=loss_defaults.inverse_weight)
    parser.add_argument("--tie", choices=("decoded", "distortion"), default=loss_defaults.tie)
    parser.add_argument("--distortion-weight", type=float, default=loss_defaults.distortion_weight)
    add_bf16_option(parser, defaults.bf16)
    args = parse_training_args(parser)
    loss = EndToEndLossConfig(rate_weight=args.rate_weight, aux_weight=args.aux_weight,
                              inverse_weight=args.inverse_weight, tie=args.tie, distortion_weight=args.distortion_weight)
    config = EndToEndConfig(architecture=args.architecture, base_width=args.base_width, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, compressor_lr=args.compressor_lr,
                            rate_warmup_epochs=args.rate_warmup_epochs, bf16=args.bf16, seed=args.seed,
                            limit=args.limit, loss=loss)
    train(config, args.data, args.target, args.aux, args.out, args.resume, args.init,
          None if args.init else args.encoder_init, args.compressor_init)


if __name__ == "__main__":
    main()

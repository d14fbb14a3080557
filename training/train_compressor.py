"""Train the FactorizedPrior compressor on the generator's perturbed CIFAR-10 images (as PMC²).

Loss "rd" (default): λ·255²·MSE(x̂, x') + bpp, λ = 0.01.  Loss "task": the same plus β·CE(target(x̂), y)
(the distortion term keeps x̂ inside the pixel range; without it the clamp cuts the CE gradient).  Loss "agreement":
the same plus β·KL(target(x') ‖ target(x̂)): the target's whole answer on the uncoded image is what x̂ must give.
``--straight-through`` trains on what coding computes: g_s sees the rounded latent (the rate still comes
from the noisy one) and the target sees the clamped x̂, both with straight-through gradients; without it,
g_s sees the latent plus uniform noise as in CompressAI.
Adam (lr 1e-4 main, 1e-3 for the entropy bottleneck's quantiles), ReduceLROnPlateau on the validation loss
(``--schedule cosine``: the main rate falls to 0 over ``--epochs``), gradient-norm clip 1.0. The best epoch goes
to ``--out/compressor.pt``.
``--phone-jpeg Q`` perturbs the images as the edge receives them (after the phone's JPEG at quality Q).
``--generator none`` trains on the images themselves: a rate-distortion start (``--loss rd``) for a protector whose
output carries little variance (DAPter's: a pixel spread of 0.03 around grey), on which a compressor trained from
random weights settles on the mean image; its ``--init`` then starts the task training on the protector's images,
and ``--match-statistics`` rescales that start to the protector's pixel spread (``training/compressor_rescaling.py``).
``--architecture residual`` trains deeper residual transforms behind the same entropy model (``training/compressor.py``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from compressai.models import FactorizedPrior
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau
from tqdm import tqdm

from pmc2.training.classifiers import load_classifier
from pmc2.training.compressor import (ARCHITECTURES, CPU_M, CPU_N, DEFAULT_ARCHITECTURE, build_compressor,
                                      clear_entropy_tables, save_compressor, shape_of)
from pmc2.training.compressor_rescaling import channel_statistics, fold_into_compressor, matching_affine
from pmc2.training.data import as_received_tensors, batches, denormalize, normalize, seeded_training_data, to_unit
from pmc2.training.generator import PixelCube, load_generator
from pmc2.training.train_generator import warmup_cosine
from pmc2.training.loop import fit, shuffled
from pmc2.training.records import RunLog, load_initial_weights
from pmc2.training.training_cli import parse_training_args, training_parser
from pmc2.training.weight_shards import load_sharded
from pmc2.value_ranges import jpeg_quality


@dataclass
class CompressorConfig:
    n: int = CPU_N
    m: int = CPU_M
    architecture: str = DEFAULT_ARCHITECTURE
    loss: str = "rd"
    lmbda: float = 0.01
    task_weight: float = 1.0
    straight_through: bool = False
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    schedule: str = "plateau"
    aux_lr: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    limit: int | None = None
    phone_jpeg: int | None = None
    match_statistics: bool = False


@torch.inference_mode()
def perturb_all(generator: PixelCube, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[0, 1] perturbed images for a whole uint8 set."""
    out = [denormalize(generator(batch)).clamp(0, 1) for batch, _ in tqdm(
        batches(images, labels, 500), total=-(-len(images) // 500), desc="perturbing")]
    return torch.cat(out)


def bits_per_pixel(likelihoods: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    num_pixels = images.shape[0] * images.shape[2] * images.shape[3]
    return torch.log(likelihoods).sum() / (-math.log(2) * num_pixels)


def straight_through(exact: torch.Tensor, differentiable: torch.Tensor) -> torch.Tensor:
    """``exact`` in the forward pass, the gradient of ``differentiable`` in the backward pass."""
    return differentiable + (exact - differentiable).detach()


def forward_with_rounded_latent(model: FactorizedPrior, images: torch.Tensor) -> dict:
    """The training forward pass with g_s fed round(y − medians) + medians, gradients passed straight through."""
    latent = model.g_a(images)
    _, likelihoods = model.entropy_bottleneck(latent)
    medians = model.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    rounded = straight_through(torch.round(latent - medians) + medians, latent)
    return {"x_hat": model.g_s(rounded), "likelihoods": {"y": likelihoods}}


def true_labels(target: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference of the label cross-entropy: the labels themselves."""
    return labels


@torch.no_grad()  # not inference mode: the KL saves the reference for its backward pass
def target_log_probabilities(target: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The target's log class distribution on each (uncoded) image, for a whole set at once."""
    return torch.cat([nn.functional.log_softmax(target(normalize(batch)), dim=1)
                      for batch in tqdm(images.split(500), desc="the target's answers on the uncoded images")])


def label_cross_entropy(target: nn.Module, decoded: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The target's cross-entropy on the decoded images against the true labels."""
    return nn.functional.cross_entropy(target(normalize(decoded)), labels)


def disagreement_with_uncoded(target: nn.Module, decoded: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """KL(target(uncoded) ‖ target(decoded)) of the target's class distributions, averaged over the batch;
    ``reference``: log target(uncoded) (``target_log_probabilities``)."""
    answer = nn.functional.log_softmax(target(normalize(decoded)), dim=1)
    return nn.functional.kl_div(answer, reference, log_target=True, reduction="batchmean")


@dataclass(frozen=True)
class TaskTerm:
    """A task term: what it scores the decoded images against, computed once per image set from the uncoded images
    and their labels (``reference``), and the term on a batch (``of``)."""

    metric: str  # its key in the training metrics
    reference: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    of: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


TASK_TERMS = {"task": TaskTerm("ce", true_labels, label_cross_entropy),
              "agreement": TaskTerm("kl", target_log_probabilities, disagreement_with_uncoded)}
LOSSES = ("rd", *TASK_TERMS)


@dataclass(frozen=True)
class Schedule:
    """How the main learning rate moves: built from the optimiser and the run's total steps; stepped after every
    batch (``per_step``) or on the validation loss after every epoch."""

    build: Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler | ReduceLROnPlateau]
    per_step: bool


SCHEDULES = {
    "plateau": Schedule(lambda optimizer, _steps: ReduceLROnPlateau(optimizer, mode="min"), per_step=False),
    "cosine": Schedule(lambda optimizer, steps: LambdaLR(optimizer, warmup_cosine(steps, 1)), per_step=True),
}


class CompressorObjective:
    def __init__(self, config: CompressorConfig, target: nn.Module | None) -> None:
        self.config, self.target = config, target
        self.task_term = TASK_TERMS.get(config.loss)

    def references(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What each image's decode is scored against: the task term's reference (the labels without one)."""
        return labels if self.task_term is None else self.task_term.reference(self.target, images, labels)

    def __call__(self, output: dict, images: torch.Tensor, references: torch.Tensor) -> dict[str, torch.Tensor]:
        bpp = bits_per_pixel(output["likelihoods"]["y"], images)
        x_hat = output["x_hat"]
        terms = {"bpp": bpp, "mse": nn.functional.mse_loss(x_hat, images)}
        terms["loss"] = self.config.lmbda * 255**2 * terms["mse"] + bpp
        if self.task_term is not None:
            clamped = straight_through(x_hat.clamp(0, 1), x_hat) if self.config.straight_through else x_hat.clamp(0, 1)
            terms[self.task_term.metric] = self.task_term.of(self.target, clamped, references)
            terms["loss"] = terms["loss"] + self.config.task_weight * terms[self.task_term.metric]
        return terms


@torch.inference_mode()
def validate(model: FactorizedPrior, objective: CompressorObjective, target: nn.Module | None, images: torch.Tensor,
             labels: torch.Tensor, references: torch.Tensor) -> dict[str, float]:
    """Loss, bits per pixel and MSE of the validation images and, given a target, its accuracy on them decoded;
    ``references``: what the objective scores each image's decode against."""
    model.eval()
    sums = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "correct": 0.0}
    for start in range(0, len(images), 500):
        batch, batch_labels = images[start : start + 500], labels[start : start + 500]
        output = model(batch)
        terms = objective(output, batch, references[start : start + 500])
        for key in ("loss", "bpp", "mse"):
            sums[key] += terms[key].item() * len(batch)
        if target is not None:
            logits = target(normalize(output["x_hat"].clamp(0, 1)))
            sums["correct"] += (logits.argmax(1) == batch_labels).sum().item()
    n = len(images)
    metrics = {"validation_loss": sums["loss"] / n, "validation_bpp": sums["bpp"] / n, "validation_mse": sums["mse"] / n}
    return metrics | ({"validation_target_accuracy": 100 * sums["correct"] / n} if target is not None else {})


def require_init_shape(init: Path, config: CompressorConfig) -> None:
    """Exit naming the options to pass when ``init`` is a compressor of another architecture or size, or no
    compressor at all."""
    checkpoint = load_sharded(init)
    if "n" not in checkpoint or "m" not in checkpoint:
        raise SystemExit(f"{init} is not a compressor checkpoint (it names no N and M)")
    architecture, n, m = shape_of(checkpoint)
    if (architecture, n, m) != (config.architecture, config.n, config.m):
        raise SystemExit(f"{init} is a {architecture} compressor with N={n}, M={m}: pass --architecture {architecture} "
                         f"--n {n} --m {m} to train from it")


def train(config: CompressorConfig, data: Path, generator_path: Path | None, target_path: Path, out: Path,
          resume: bool, init: Path | None = None) -> dict:
    """Train on the generator's images of ``data``'s training split (as received, with ``config.phone_jpeg``), or on
    those images themselves when ``generator_path`` is None."""
    train_set, validation = seeded_training_data(data, config.seed, config.limit)
    target = load_classifier(target_path)
    train_images, train_labels = as_received_tensors(train_set, config.phone_jpeg)
    val_images, val_labels = as_received_tensors(validation, config.phone_jpeg)
    public_statistics = channel_statistics(to_unit(train_images)) if config.match_statistics else None
    if generator_path is None:
        train_images, val_images = to_unit(train_images), to_unit(val_images)
    else:
        generator = load_generator(generator_path)
        train_images = perturb_all(generator, train_images, train_labels)
        val_images = perturb_all(generator, val_images, val_labels)
    return train_on(config, (train_images, train_labels), (val_images, val_labels), train_set.sha256(), target,
                    {"generator": None if generator_path is None else str(generator_path)}, out, resume, init,
                    public_statistics)


def train_on(config: CompressorConfig, training: tuple[torch.Tensor, torch.Tensor],
             validation: tuple[torch.Tensor, torch.Tensor], data_sha256: str, target: nn.Module | None,
             sources: dict[str, str | None], out: Path, resume: bool, init: Path | None = None,
             init_statistics: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Train on [0, 1] images and their labels (what the compressor will code), made from the data whose digest
    is ``data_sha256``. ``target`` (needed by the task loss) scores the decoded validation images; ``sources`` says
    in the record and the checkpoint where the images came from. ``config.match_statistics`` rescales the initial
    weights from ``init_statistics`` (per-channel mean and spread of the images ``init`` was trained on) to the
    training images'."""
    (train_images, train_labels), (val_images, val_labels) = training, validation
    if config.loss in TASK_TERMS and target is None:
        raise ValueError(f"the {config.loss} loss needs a target")
    if config.match_statistics and (init is None or init_statistics is None):
        raise ValueError("matching the images' statistics rescales initial weights: give them and their images' statistics")
    if init is not None:
        require_init_shape(init, config)
    model = build_compressor(config.n, config.m, config.architecture)
    origin = load_initial_weights(model, init) if init else None
    if config.match_statistics:
        affine = matching_affine(train_images, init_statistics)
        fold_into_compressor(model, affine)
        origin = {**origin, "rescaled_by": affine.as_record()}
    main_params = [p for name, p in model.named_parameters() if not name.endswith(".quantiles")]
    aux_params = [p for name, p in model.named_parameters() if name.endswith(".quantiles")]
    optimizer = torch.optim.Adam(main_params, lr=config.lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=config.aux_lr)
    schedule, steps_per_epoch = SCHEDULES[config.schedule], -(-len(train_images) // config.batch_size)
    scheduler = schedule.build(optimizer, config.epochs * steps_per_epoch)
    objective = CompressorObjective(config, target)
    train_references, val_references = objective.references(train_images, train_labels), objective.references(
        val_images, val_labels)
    rng = torch.Generator().manual_seed(config.seed)
    log = RunLog(out, "compressor", data_sha256, {**asdict(config), **sources, "init": origin})
    if resume:  # the training state's tables (if any) replace those of the initial weights
        clear_entropy_tables(model)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        images, references = batch
        optimizer.zero_grad(set_to_none=True)
        aux_optimizer.zero_grad(set_to_none=True)
        output = forward_with_rounded_latent(model, images) if config.straight_through else model(images)
        terms = objective(output, images, references)
        terms["loss"].backward()
        nn.utils.clip_grad_norm_(main_params, config.clip)
        optimizer.step()
        terms["aux_loss"] = model.aux_loss()
        terms["aux_loss"].backward()
        aux_optimizer.step()
        if schedule.per_step:
            scheduler.step()
        return {key: value.item() for key, value in terms.items()}

    def validate_and_adapt_lr() -> dict[str, float]:
        metrics = validate(model, objective, target, val_images, val_labels, val_references)
        if not schedule.per_step:
            scheduler.step(metrics["validation_loss"])
        return metrics

    def save(best: dict) -> list[Path]:
        checkpoint = out / "compressor.pt"
        save_compressor(copy.deepcopy(model), checkpoint, {"loss": config.loss, "lmbda": config.lmbda, **sources,
                                                           "epoch": best["epoch"]})
        return [checkpoint]

    return fit(
        log, {"model": model, "optimizer": optimizer, "aux_optimizer": aux_optimizer, "scheduler": scheduler, "rng": rng},
        resume, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
        epoch_batches=lambda _epoch: shuffled(train_images, train_references, config.batch_size, rng),
        step=step, validate=validate_and_adapt_lr, save=save, keep_best_by="validation_loss",
    )


def generator_or_none(text: str) -> Path | None:
    """--generator's value: a checkpoint, or ``none`` (the images themselves; ``./none`` names a file)."""
    return None if text == "none" else Path(text)


def main() -> None:
    defaults = CompressorConfig()
    parser = training_parser(__doc__.splitlines()[0], defaults)
    parser.add_argument("--generator", type=generator_or_none, default=Path("checkpoints/generator.pt"),
                        help="the protector whose images are coded; none: the images themselves (./none: a file)")
    parser.add_argument("--target", type=Path, default=Path("checkpoints/fastnet.pt"))
    parser.add_argument("--n", type=int, default=defaults.n)
    parser.add_argument("--m", type=int, default=defaults.m)
    parser.add_argument("--architecture", choices=tuple(ARCHITECTURES), default=defaults.architecture,
                        help="the transforms: FactorizedPrior's own, or deeper residual ones (training/compressor.py)")
    parser.add_argument("--loss", choices=LOSSES, default=defaults.loss)
    parser.add_argument("--schedule", choices=tuple(SCHEDULES), default=defaults.schedule,
                        help="the main learning rate: cut on a validation plateau, or a cosine down to 0 over --epochs")
    parser.add_argument("--lmbda", type=float, default=defaults.lmbda)
    parser.add_argument("--task-weight", type=float, default=defaults.task_weight)
    parser.add_argument("--straight-through", action="store_true",
                        help="train g_s on the rounded latent and the target on the clamped x̂ (straight-through gradients)")
    parser.add_argument("--phone-jpeg", type=jpeg_quality, default=None, metavar="Q",
                        help="perturb the images after the phone's JPEG at quality Q (default: as stored)")
    parser.add_argument("--match-statistics", action="store_true",
                        help="rescale the --init weights from the public images' per-channel mean and spread "
                             "to the coded images'")
    args = parse_training_args(parser)
    config = CompressorConfig(
        n=args.n, m=args.m, architecture=args.architecture, loss=args.loss, lmbda=args.lmbda, task_weight=args.task_weight,
        straight_through=args.straight_through, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        schedule=args.schedule,
        seed=args.seed, limit=args.limit, phone_jpeg=args.phone_jpeg,
        match_statistics=args.match_statistics,
    )
    if args.match_statistics and args.init is None:
        parser.error("--match-statistics rescales the initial weights: give --init")
    train(config, args.data, args.generator, args.target, args.out, args.resume, args.init)


if __name__ == "__main__":
    main()

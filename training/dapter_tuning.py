"""DAPter trained by its paper's own λ tuning strategy (WWW'21 §7.1), rounds of the converter's training:

    round 0: train at λ = 0.9 ──measure on the validation images──▶ accuracy drop > 3 points? λ −= 0.02, fine-tune
                                                                     else image entropy > 3 bits? λ += 0.02, fine-tune
                                                                     else: done

    python -m pmc2.training.dapter_tuning --target checkpoints/fastnet.pt --aux checkpoints/compact_resnet.pt \\
        --phone-jpeg 90 --epochs 40 --fine-tune-epochs 8 --threads 2 --out runs/dapter_fastnet

The drop is the target's clean accuracy (on the validation images as stored, as the report's clean accuracy) minus
its accuracy on the converter's output for the same images as the edge receives them (after the phone's JPEG),
rounded to 8-bit pixels (what the PNG link carries); the target's accuracy on the received images without the
converter is recorded beside it, to show what the phone's JPEG alone costs. The image entropy is the paper's: per
channel, the entropy of the image's 256-bin pixel histogram, summed over RGB, averaged over images, in bits (the
paper names no logarithm base). When both criteria fail, the accuracy's comes first (λ is lowered). The strategy
also ends when the next λ was tried before (the two criteria pull against each other) or the rounds run out.
The first round trains from scratch, or with ``--init`` from a converter tuned for another target (then with fewer
``--epochs``). Each round trains in ``<work>/round<k>`` (``--resume`` continues the round in progress and skips the
measured ones; the settings are written before round 0 trains, and a resumed tuning must have the same but for
``--rounds``, which may be cut to end the walk or raised to go on: the last round's decision is taken anew); the last
round within the accuracy criterion (else the most accurate) has its converter, record and metrics copied to ``--out``
beside ``dapter_tuning.json``, which lists every round (its λ, epochs, measurements and what the strategy decided),
why the walk ended, and the target's accuracy and the image entropy on the validation images as received, before
conversion.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from pmc2.training.atomic_files import replace_atomically
from pmc2.training.classifier_accuracy import clean_accuracy
from pmc2.training.classifiers import load_classifier
from pmc2.training.data import as_received_tensors, normalize, seeded_training_data, to_unit
from pmc2.training.generator import DapterConverter, PixelOutput, load_generator
from pmc2.training.perturbation_loss import PerturbationLossConfig
from pmc2.training.records import record_path, sha256_file
from pmc2.training.train_generator import GeneratorConfig, train
from pmc2.training.training_cli import add_bf16_option, parse_training_args, training_parser
from pmc2.value_ranges import jpeg_quality, positive_int

TUNING_FILE = "dapter_tuning.json"
BATCH = 500


@dataclass(frozen=True)
class Strategy:
    """The paper's criteria and step (§7.1)."""

    start_lambda: float = 0.9
    step: float = 0.02
    max_accuracy_drop: float = 3.0  # points of top-1 accuracy
    max_entropy_bits: float = 3.0
    rounds: int = 8


def next_lambda(lmbda: float, drop: float, entropy_bits: float, tried: list[float],
                strategy: Strategy) -> tuple[float | None, str]:
    """The λ of the next round (None: the strategy ends here) and why."""
    if drop > strategy.max_accuracy_drop:
        candidate, reason = lmbda - strategy.step, f"accuracy drop {drop:.2f} > {strategy.max_accuracy_drop} points"
    elif entropy_bits > strategy.max_entropy_bits:
        candidate, reason = lmbda + strategy.step, f"image entropy {entropy_bits:.2f} > {strategy.max_entropy_bits} bits"
    else:
        return None, "both criteria hold"
    candidate = round(candidate, 6)
    if any(abs(candidate - seen) < 1e-9 for seen in tried):
        return None, f"{reason}, but λ = {candidate:g} was tried before"
    if not 0.0 < candidate < 1.0:
        return None, f"{reason}, but λ = {candidate:g} is outside (0, 1)"
    if len(tried) >= strategy.rounds:
        return None, f"{reason}, but the rounds' budget ({strategy.rounds}) is spent"
    return candidate, f"{reason}: λ → {candidate:g}"


def shipped_round(rounds: list[dict], strategy: Strategy) -> int:
    """The last round within the accuracy criterion (the one the strategy ends at when it ends with both met; when
    raising λ for the entropy's sake costs the accuracy, the round before is the one kept), else the most accurate
    (the later on a tie): the walk lowered λ for the accuracy and never reached the criterion."""
    within = [done["round"] for done in rounds if done["accuracy_drop"] <= strategy.max_accuracy_drop]
    return within[-1] if within else min(rounds, key=lambda done: (done["accuracy_drop"], -done["round"]))["round"]


def _comparable(settings: dict) -> dict:
    """The settings a resumed tuning must share: all but the rounds' budget, which may be cut or raised."""
    return {**settings, "strategy": {key: value for key, value in settings["strategy"].items() if key != "rounds"}}


def image_entropy_bits(images_uint8: torch.Tensor) -> torch.Tensor:
    """Per NCHW uint8 image: the sum over channels of its pixel histogram's entropy in bits (DAPter's H_I)."""
    n, channels, height, width = images_uint8.shape
    index = torch.arange(n * channels).view(n, channels, 1) * 256 + images_uint8.reshape(n, channels, -1).long()
    counts = torch.bincount(index.flatten(), minlength=n * channels * 256).view(n, channels, 256).double()
    p = counts / (height * width)
    return -(p * torch.log2(p.where(p > 0, torch.ones_like(p)))).sum(dim=(1, 2))


@torch.inference_mode()
def converted(checkpoint: Path, images_uint8: torch.Tensor) -> torch.Tensor:
    """The converter's output for uint8 NCHW images, rounded to 8-bit pixels."""
    convert = PixelOutput(load_generator(checkpoint))
    return torch.cat([(convert(normalize(to_unit(images_uint8[s : s + BATCH]))) * 255).round().to(torch.uint8)
                      for s in range(0, len(images_uint8), BATCH)])


def measure(checkpoint: Path, target: torch.nn.Module, images_uint8: torch.Tensor, labels: torch.Tensor,
            clean: float) -> dict[str, float]:
    """The converter's numbers on ``images_uint8`` (as the edge receives them) against the target's ``clean``
    accuracy."""
    output = converted(checkpoint, images_uint8)
    accuracy = clean_accuracy(target, output, labels)["accuracy"]
    return {"clean_accuracy": clean, "accuracy": accuracy, "accuracy_drop": round(clean - accuracy, 4),
            "image_entropy_bits": float(image_entropy_bits(output).mean())}


def _load_rounds(work: Path, resume: bool, settings: dict) -> list[dict]:
    """The rounds measured so far in ``work``: none for a new tuning, which refuses a folder an earlier one used."""
    path, begun = work / TUNING_FILE, any(work.glob("round*"))
    if not resume:
        if begun or path.exists():
            raise SystemExit(f"{work} holds an earlier tuning: pass --resume to continue it, or choose another --work")
        return []
    if not path.exists():
        if begun:
            raise SystemExit(f"{work} holds rounds but no {TUNING_FILE} naming their settings: choose another --work")
        return []
    tuning = json.loads(path.read_text())
    if _comparable(tuning["settings"]) != _comparable(settings):
        raise SystemExit(f"{path} was written with other settings ({tuning['settings']}); resume with those")
    return tuning["rounds"]


def _check_init(init: Path, config: GeneratorConfig) -> None:
    """Refuse a starting converter of another architecture or width before anything is written."""
    converter = load_generator(init)
    found = (converter.architecture, converter.base_width)
    if found != (config.architecture, config.base_width):
        raise SystemExit(f"--init {init} is a {found[0]} converter of width {found[1]}, not the {config.architecture} "
                         f"of width {config.base_width} this tuning trains: pass --base-width {found[1]}")


def _write_json(path: Path, record: dict) -> None:
    replace_atomically(path, (json.dumps(record, indent=2) + "\n").encode())


def tune(config: GeneratorConfig, fine_tune: GeneratorConfig, strategy: Strategy, data: Path, target_path: Path,
         aux_path: Path, work: Path, out: Path, resume: bool, init: Path | None = None) -> dict:
    """Train rounds until the strategy ends, the first from ``init``'s converter where given (else from scratch);
    copy the shipped round's converter (``shipped_round``) to ``out``; return the tuning record."""
    if init is not None:
        _check_init(init, config)
    train_set, validation = seeded_training_data(data, config.seed, config.limit)
    settings = {"first_round": asdict(config), "fine_tune": asdict(fine_tune), "strategy": asdict(strategy),
                "target": str(target_path), "target_sha256": sha256_file(target_path), "aux": str(aux_path),
                "aux_sha256": sha256_file(aux_path), "data_sha256": train_set.sha256(),
                **({"first_round_init": str(init), "first_round_init_sha256": sha256_file(init)} if init is not None else {})}
    work.mkdir(parents=True, exist_ok=True)
    rounds = _load_rounds(work, resume, settings)
    _write_json(work / TUNING_FILE, {"settings": settings, "rounds": rounds})  # before a round trains under them
    images, labels = as_received_tensors(validation, config.phone_jpeg)
    target = load_classifier(target_path)
    clean = clean_accuracy(target, as_received_tensors(validation, None)[0], labels)["accuracy"]
    if rounds:  # decided anew under this call's budget (--rounds may be cut, or raised, on resuming)
        last = rounds[-1]
        last["next_lambda"], last["decision"] = next_lambda(last["lambda"], last["accuracy_drop"],
                                                            last["image_entropy_bits"],
                                                            [done["lambda"] for done in rounds], strategy)
    lmbda = rounds[-1]["next_lambda"] if rounds else strategy.start_lambda
    while lmbda is not None:
        k = len(rounds)
        recipe = config if k == 0 else fine_tune
        recipe = replace(recipe, loss=replace(recipe.loss, dapter_lambda=lmbda))
        folder = work / f"round{k}"
        train(recipe, data, target_path, aux_path, folder, resume=True,
              init=init if k == 0 else work / f"round{k - 1}" / "generator.pt")
        measured = measure(folder / "generator.pt", target, images, labels, clean)
        tried = [*(done["lambda"] for done in rounds), lmbda]
        following, decision = next_lambda(lmbda, measured["accuracy_drop"], measured["image_entropy_bits"], tried,
                                          strategy)
        rounds.append({"round": k, "lambda": lmbda, "epochs": recipe.epochs, **measured, "decision": decision,
                       "next_lambda": following})
        _write_json(work / TUNING_FILE, {"settings": settings, "rounds": rounds})
        print(f"round {k}: λ = {lmbda:g}, accuracy {measured['accuracy']:.2f}% (clean {clean:.2f}%), image entropy "
              f"{measured['image_entropy_bits']:.2f} bits: {decision}")
        lmbda = following
    shipped = shipped_round(rounds, strategy)
    out.mkdir(parents=True, exist_ok=True)
    (out / TUNING_FILE).unlink(missing_ok=True)  # written last: present only beside a whole copy
    for name in ("generator.pt", record_path(Path("generator.pt")).name, "generator.metrics.jsonl"):
        replace_atomically(out / name, (work / f"round{shipped}" / name).read_bytes())
    record = {"settings": settings, "rounds": rounds, "ended": rounds[-1]["decision"], "shipped_round": shipped,
              "received": {"accuracy": clean_accuracy(target, images, labels)["accuracy"],  # before conversion
                           "image_entropy_bits": float(image_entropy_bits(images).mean())}}
    _write_json(out / TUNING_FILE, record)
    return record


def main() -> None:
    defaults = GeneratorConfig(architecture=DapterConverter.architecture, epochs=40,
                               loss=PerturbationLossConfig(objective="dapter"))
    strategy = Strategy()
    parser = training_parser(__doc__.splitlines()[0], defaults)
    parser.set_defaults(out=None)  # the shared default, checkpoints/, holds the default pair's generator.pt
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--aux", type=Path, required=True, help="measured alongside (DAPter's loss does not use it)")
    parser.add_argument("--work", type=Path, default=None, help="where the rounds train (default: runs/dapter_tuning/"
                                                                 "<target file's stem>)")
    parser.add_argument("--base-width", type=positive_int, default=defaults.base_width,
                        help="the converter's first layer's channels (the paper draws them for 224-pixel images only)")
    parser.add_argument("--fine-tune-epochs", type=positive_int, default=8)
    parser.add_argument("--fine-tune-lr", type=float, default=1e-3)
    parser.add_argument("--start-lambda", type=float, default=strategy.start_lambda)
    parser.add_argument("--rounds", type=positive_int, default=strategy.rounds, help="at most this many rounds")
    parser.add_argument("--phone-jpeg", type=jpeg_quality, default=90, metavar="Q",
                        help="train and measure on the images after the phone's JPEG at quality Q")
    add_bf16_option(parser, defaults.bf16)
    args: argparse.Namespace = parse_training_args(parser)
    if args.out is None:
        parser.error("--out is required: the protector's checkpoint folder (e.g. checkpoints/protectors/dapter)")
    config = replace(defaults, base_width=args.base_width, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     bf16=args.bf16, seed=args.seed, limit=args.limit, phone_jpeg=args.phone_jpeg)
    fine_tune = replace(config, epochs=args.fine_tune_epochs, lr=args.fine_tune_lr, warmup_epochs=0.5)
    if not 0.0 < args.start_lambda < 1.0 or args.fine_tune_lr <= 0.0 or args.lr <= 0.0:
        parser.error("--start-lambda must lie in (0, 1) and the learning rates be positive")
    work = args.work or Path("runs/dapter_tuning") / args.target.stem
    tune(config, fine_tune, replace(strategy, start_lambda=args.start_lambda, rounds=args.rounds), args.data,
         args.target, args.aux, work, args.out, args.resume, args.init)


if __name__ == "__main__":
    main()

"""Fit a protector (generator + compressor + codebook) to a target you bring, and measure it.

    python -m pmc2.fit --target fastnet | model.pt | model.onnx | https://host/v1/classify \\
                       [--access white-box|black-box] --out runs/fit_fastnet [--resume]

Writes ``<out>/bundle/`` (the edge's models: generator, g_a, g_s, entropy tables), ``<out>/fit.json`` (the command,
settings, every stage's summary, the target queries, the CPU and its time) and ``<out>/fit.md`` (Table 3's row
and the attack summary); prints the latter. ``--resume`` skips the stages done and continues a training stage
from its last epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from pmc2.evaluation.fitted import render_fit
from pmc2.fit.access import BLACK_BOX, WHITE_BOX, QueryCount
from pmc2.fit.stages import COMPRESSOR_START_EPOCHS, STAGES, FitRun, FitSettings, run_stage
from pmc2.fit.code_steering import Steering
from pmc2.fit.attempts import Attempt, file_killed_attempt, forget_heartbeat, heartbeat
from pmc2.fit.input_spaces import INPUT_SPACES
from pmc2.fit.targets import TargetError, TargetOptions, resolve_target
from pmc2.machine import cpu_model
from pmc2.runtime.paths import CHECKPOINTS, SHARED_DATA
from pmc2.training.atomic_files import replace_atomically
from pmc2.training.records import git_commit
from pmc2.training.train_classifier import ClassifierConfig
from pmc2.training.train_compressor import CompressorConfig
from pmc2.training.train_end_to_end import EndToEndConfig
from pmc2.training.training_cli import add_bf16_option
from pmc2.value_ranges import non_negative_int, positive_float, positive_int

RECORD = "fit.json"
SUPERSEDED = "superseded"  # <out>/superseded/<stage>.<n>: the folders of stages a --redo-from ran again


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    classifier, end_to_end = ClassifierConfig(), EndToEndConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True,
                        help="a classifier name or checkpoint (.pt), an ONNX file, or a cloud's https://…/v1/classify")
    parser.add_argument("--access", choices=(WHITE_BOX, BLACK_BOX), default=None,
                        help="default: the best the target offers (white-box where the model itself is at hand)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resume", action="store_true", help="continue the run recorded in <out>/fit.json")
    parser.add_argument("--redo-from", choices=[stage.name for stage in STAGES], default=None,
                        help="with --resume: run this stage and every later one again (their settings may change; "
                             "their earlier summaries and CPU time are kept under 'superseded')")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="CIFAR-10 folder: the public images")
    parser.add_argument("--aux", type=Path, default=CHECKPOINTS / "compact_resnet.pt",
                        help="a public classifier that must learn nothing from what the cloud decodes")
    parser.add_argument("--limit", type=positive_int, default=None, help="public images used (smoke runs)")
    parser.add_argument("--edge-classifier-epochs", type=positive_int, default=classifier.epochs)
    parser.add_argument("--compressor-start-epochs", type=positive_int, default=COMPRESSOR_START_EPOCHS,
                        help="rate-distortion epochs of the compressor before the end-to-end training")
    parser.add_argument("--epochs", type=positive_int, default=end_to_end.epochs, help="end-to-end epochs")
    parser.add_argument("--batch-size", type=positive_int, default=end_to_end.batch_size, help="end-to-end batch")
    parser.add_argument("--codebook-images", type=positive_int, default=FitSettings.codebook_images)
    parser.add_argument("--shaping-rounds", type=non_negative_int, default=FitSettings.shaping_rounds,
                        help="rounds of shaping g_s again while the teacher misreads a code image")
    parser.add_argument("--steering-rounds", type=non_negative_int, default=Steering.rounds,
                        help="rounds of steering code images the target misreads into its classes, asking it")
    parser.add_argument("--steering-attack-steps", type=positive_int, default=Steering.attack_steps,
                        help="HopSkipJump's iterations per misread code image and round")
    parser.add_argument("--evaluation-limit", type=positive_int, default=None, help="evaluation images (all 5,000)")
    parser.add_argument("--attacker-images", type=positive_int, default=FitSettings.attacker_images)
    parser.add_argument("--attack-epochs", type=positive_int, default=FitSettings.attack_epochs)
    parser.add_argument("--input-space", choices=INPUT_SPACES, default=TargetOptions.input_space,
                        help="what an ONNX target takes")
    parser.add_argument("--ca", type=Path, default=None, help="the CA a cloud's certificate is checked against")
    parser.add_argument("--client-cert", type=Path, default=None, help="PEM (with key) for a cloud's mutual TLS")
    parser.add_argument("--threads", type=non_negative_int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heartbeat-seconds", type=positive_float, default=60.0,
                        help="how often the running attempt's time is written down, for a run killed outright")
    add_bf16_option(parser, classifier.bf16)  # a run resumed on another CPU keeps its own choice by naming it
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> FitSettings:
    return FitSettings(
        data=args.data, aux=args.aux, limit=args.limit, codebook_images=args.codebook_images,
        shaping_rounds=args.shaping_rounds,
        codebook=Steering(rounds=args.steering_rounds, attack_steps=args.steering_attack_steps),
        evaluation_limit=args.evaluation_limit, attacker_images=args.attacker_images,
        attack_epochs=args.attack_epochs, seed=args.seed,
        edge_classifier=ClassifierConfig(model="fastnet", epochs=args.edge_classifier_epochs, bf16=args.bf16,
                                         seed=args.seed),
        compressor_start=CompressorConfig(epochs=args.compressor_start_epochs, phone_jpeg=FitSettings.phone_quality,
                                          seed=args.seed, limit=args.limit),
        end_to_end=EndToEndConfig(epochs=args.epochs, batch_size=args.batch_size, bf16=args.bf16, seed=args.seed),
    )


def differing_settings(recorded: dict, ours: dict, prefix: str = "") -> list[str]:
    """The dotted names of the settings in which two records differ (a key only one has counts)."""
    names = []
    for key in sorted(recorded.keys() | ours.keys()):
        theirs, mine = recorded.get(key), ours.get(key)
        if isinstance(theirs, dict) and isinstance(mine, dict):
            names += differing_settings(theirs, mine, f"{prefix}{key}.")
        elif theirs != mine or (key in recorded) != (key in ours):
            names.append(f"{prefix}{key}")
    return names


def open_settings(out: Path, record: dict, settings_json: dict, redo_from: str | None = None) -> set[str]:
    """The settings a resumed run may add or change: those of stages (settings named after their stage) that neither
    the run nor any later stage has begun (in its record, or by leaving its folder ``<out>/<stage>``, unless it is
    to be redone), so that nothing it did was shaped by them."""
    begun = record.get("stages", {}).keys() | {attempt["stage"] for attempt in record.get("interrupted", [])}
    names = [stage.name for stage in STAGES]
    kept = names[: names.index(redo_from)] if redo_from else names
    begun |= {name for name in kept if (out / name).exists()}
    return {name for index, name in enumerate(names) if name in settings_json and begun.isdisjoint(names[index:])}


def resume_refusal(out: Path, record: dict, target: str, kind: str, settings_json: dict,
                   redo_from: str | None = None) -> str | None:
    """Why ``record`` is not of the run these arguments describe (``redo_from`` and later stages set aside), or None."""
    unshaped = open_settings(out, record, settings_json, redo_from)
    recorded = {key: value for key, value in record["settings"].items() if key not in unshaped}
    comparable = {key: value for key, value in settings_json.items() if key not in unshaped}
    differing = [name for name, ours, theirs in (("target", target, record["target"]), ("access", kind, record["access"]))
                 if ours != theirs] + differing_settings(recorded, comparable)
    if not differing:
        return None
    hint = " (a run resumed on another CPU: name its --bf16/--no-bf16)" if any(
        name.endswith(".bf16") for name in differing) else ""
    return f"records another run ({', '.join(differing)} differ{hint}); use another --out"


def set_aside_folders(out: Path, first: str) -> dict[str, str]:
    """Move the folder of ``first`` and of every later stage (``<out>/<stage>``: checkpoints, training states,
    metrics) to ``<out>/superseded/<stage>.<n>``, so that the stages train again from nothing; returns where each went."""
    names = [stage.name for stage in STAGES]
    moved = {}
    for name in names[names.index(first):]:
        if (out / name).exists():
            number = 1 + sum(1 for _ in (out / SUPERSEDED).glob(f"{name}.*"))
            destination = out / SUPERSEDED / f"{name}.{number}"
            destination.parent.mkdir(exist_ok=True)
            (out / name).rename(destination)
            moved[name] = str(destination.relative_to(out))
    return moved


def set_aside(record: dict, first: str) -> None:
    """Move ``first`` and every later stage (done or interrupted) under ``superseded``, where their CPU time still
    counts, and drop those stages' own settings: the run then goes on as if it had never begun them."""
    names = [stage.name for stage in STAGES]
    again = set(names[names.index(first):])
    superseded = [{"stage": name, **summary} for name, summary in record["stages"].items() if name in again]
    superseded += [attempt for attempt in record.get("interrupted", []) if attempt["stage"] in again]
    record["superseded"] = record.get("superseded", []) + [{**entry, "superseded_at": git_commit()} for entry in superseded]
    record["stages"] = {name: summary for name, summary in record["stages"].items() if name not in again}
    record["interrupted"] = [attempt for attempt in record.get("interrupted", []) if attempt["stage"] not in again]
    record["settings"] = {key: value for key, value in record["settings"].items() if key not in again}


def open_record(args: argparse.Namespace, command: str, settings: FitSettings, described: str, kind: str) -> dict:
    """The run's record: a new one, or (``--resume``) the one in ``<out>``, which must be of the same run. Settings
    of stages not yet begun (added by a later version, or changed) take their values from this invocation (noted
    under ``resumed_by``)."""
    path = args.out / RECORD
    settings_json = json.loads(json.dumps(asdict(settings), default=str))
    if not path.exists():
        if args.redo_from:
            raise SystemExit(f"--redo-from: {path} does not exist; there is no run to redo stages of")
        return {"command": command, "git_commit": git_commit(),
                "target": args.target, "access": kind, "reached_as": described, "settings": settings_json,
                "cpu": cpu_model(), "threads": torch.get_num_threads(), "stages": {}}
    if not args.resume:
        raise SystemExit(f"{path} exists: give --resume to continue that run, or another --out")
    record = json.loads(path.read_text())
    file_killed_attempt(args.out, record)
    if args.redo_from:
        set_aside(record, args.redo_from)
    refusal = resume_refusal(args.out, record, args.target, kind, settings_json, args.redo_from)
    if refusal:
        raise SystemExit(f"{path} {refusal}")
    if args.redo_from:
        record["superseded_folders"] = record.get("superseded_folders", []) + [
            {"stage": stage, "folder": folder, "superseded_at": git_commit()}
            for stage, folder in set_aside_folders(args.out, args.redo_from).items()]
    if any("cpu_seconds" not in stage for stage in record["stages"].values()):
        raise SystemExit(f"{path} was written before fits recorded their CPU time: start the run again in another "
                         "--out (copy its target_answers.npz there so that no answer is paid for twice)")
    added = sorted(settings_json.keys() - record["settings"].keys())
    changed = sorted(key for key in settings_json.keys() & record["settings"].keys()
                     if settings_json[key] != record["settings"][key])
    record["settings"] = settings_json
    record["resumed_by"] = [entry if isinstance(entry, dict) else {"command": entry}  # older records: commands only
                            for entry in record.get("resumed_by", [])]
    record["resumed_by"].append(
        {"command": command, "git_commit": git_commit(), **({"settings_added": added} if added else {}),
         **({"settings_changed": changed} if changed else {})})
    return record


def stop_on_sigterm(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within: SIGTERM (a scheduler ending the run) ends it as Ctrl-C does, so the record keeps the interrupted
    attempt's time. Only the main thread can take signals; a fit run from another thread keeps the default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def sigterm_deferred() -> Iterator[None]:
    """Within: a SIGTERM is only noted, and acted on (as its handler before the block would have) when the block
    ends, so that what the block writes is written whole, whichever of the process's threads the kernel delivered
    it to. Only the main thread can set handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if received:
            signal.raise_signal(signal.SIGTERM)


def write_record(out: Path, record: dict) -> None:
    replace_atomically(out / RECORD, json.dumps(record, indent=2).encode() + b"\n")


def run_stages(out: Path, record: dict, run: FitRun, heartbeat_seconds: float) -> None:
    """Every stage not yet in ``record``, in order, with its wall and CPU time; the record is rewritten after each.
    An attempt that ends early (Ctrl-C, SIGTERM, an error) leaves its time and cause under ``interrupted``: its
    queries and CPU are spent too, and the totals count them; one killed outright, its heartbeat (``heartbeat``)."""
    for stage in STAGES:
        if stage.name in record["stages"]:
            continue
        attempt = Attempt()
        try:
            with heartbeat(out, stage.name, attempt, heartbeat_seconds):
                logging.info("fit: %s", stage.name)
                record["stages"][stage.name] = {**run_stage(run, stage), **attempt.spent()}
        except BaseException as error:
            record.setdefault("interrupted", []).append({"stage": stage.name, "ended_by": type(error).__name__,
                                                         **attempt.spent()})
            raise
        finally:
            with sigterm_deferred():
                record["queries_total"] = asdict(getattr(run.access, "count", QueryCount()))
                write_record(out, record)
                forget_heartbeat(out)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = TargetOptions(input_space=args.input_space, ca=args.ca, client_cert=args.client_cert)
    try:
        access = resolve_target(args.target, args.access, options)
    except TargetError as error:
        raise SystemExit(f"--target: {error}") from None
    settings = settings_from(args)
    if Path(args.target).resolve() == args.aux.resolve() or CHECKPOINTS / f"{args.target}.pt" == args.aux:
        raise SystemExit(f"--aux {args.aux} is the target itself: give another public classifier as --aux")
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m pmc2.fit", *(sys.argv[1:] if argv is None else argv)])
    record = open_record(args, command, settings, access.description, access.kind)
    write_record(args.out, record)  # with the attempt a killed run left, if any: its heartbeat can go
    forget_heartbeat(args.out)
    run = FitRun(args.out, settings, access)
    with sigterm_as_exit():
        run_stages(args.out, record, run, args.heartbeat_seconds)
    summary = render_fit(record)
    (args.out / "fit.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()

"""The training loop every trainer runs: resume, epochs of steps, a metrics line per epoch, the epoch kept.

    <name>.state.pt ──(--resume)──▶ for each remaining epoch:
        every module in train mode ─▶ step(batch) for each of epoch_batches(epoch)   (tqdm: running means)
            └─ every STATE_EVERY_SECONDS ─▶ <name>.state.pt, with the batches done (resumed there)
        ─▶ {"epoch", "train_<step's keys>", **validate(), "seconds"} ─▶ <name>.metrics.jsonl
        ─▶ lowest keep_best_by so far? save() + record        ─▶ <name>.state.pt
    keep_best_by=None: after the last epoch, save() + record of the last epoch

A state written inside an epoch keeps the random generators' states at the epoch's start: resuming replays the
epoch's batches done (drawing its order and augmentations again, without their steps), then takes the generators'
states as they were when it was written, so a resumed run takes the steps the uninterrupted run takes.

A trainer builds its data, models and optimisers and hands ``fit`` only what is its own: the parts of the
resumable state, an epoch's batches, one optimisation step, the validation, and how its weights are shipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from pmc2.training.records import (ResumePoint, RunLog, generator_states, restore_state, save_state,
                                   set_generator_states)

STATE_EVERY_SECONDS = 300.0  # wall time between the states written inside an epoch: what a kill loses at most


class RunningMeans:
    """The mean of each value the steps return, over the epoch so far; a batch counts ``weight`` times."""

    def __init__(self) -> None:
        self.means: dict[str, float] = {}
        self.seen = 0

    def add(self, values: dict[str, float], weight: int = 1) -> None:
        self.seen += weight
        for key, value in values.items():
            mean = self.means.get(key, 0.0)
            self.means[key] = mean + (value - mean) * weight / self.seen  # incremental, as the trainers always logged

    def state(self) -> dict:
        return {"means": dict(self.means), "seen": self.seen}

    @classmethod
    def from_state(cls, state: dict) -> "RunningMeans":
        running = cls()
        running.means, running.seen = dict(state["means"]), state["seen"]
        return running


def shuffled(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
             rng: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (images, labels) batches in an order drawn from ``rng`` when the first batch is asked for."""
    for picked in torch.randperm(len(images), generator=rng).split(batch_size):
        yield images[picked], labels[picked]


def fit(log: RunLog, parts: dict[str, Any], resume: bool, *, epochs: int, steps_per_epoch: int,
        epoch_batches: Callable[[int], Iterable[Any]], step: Callable[[Any], dict[str, float]],
        validate: Callable[[], dict[str, float]], save: Callable[[dict], list[Path]],
        keep_best_by: str | None = None, batch_weight: Callable[[Any], int] | None = None) -> dict:
    """Train up to ``epochs`` (from ``<out>/<name>.state.pt`` when ``resume`` and it exists) and return the
    metrics of the epoch whose weights were shipped.

    parts: what the state file holds, by name (modules, optimisers, schedulers, torch.Generators).
    epoch_batches(epoch): that epoch's batches, drawn lazily so that a shared RNG is used in the order the steps ask.
    step(batch): one optimisation step; the running means of what it returns become the ``train_*`` metrics.
    validate(): the end-of-epoch metrics (a scheduler that steps on them steps there).
    save(metrics): writes the shipped checkpoint(s) of the epoch ``metrics`` describes; returns their paths.
    keep_best_by: ship the epoch with the lowest value of this metric, when it is reached; None: the last.
    batch_weight(batch): how many times a batch counts in the running means (None: once each).
    """
    state_path = log.out / f"{log.name}.state.pt"
    start = ResumePoint(0, 0.0, None)
    if resume and state_path.exists():
        start = restore_state(state_path, parts)
    # lines of epochs this run takes (again): a run killed between an epoch's metrics line and its state, or a
    # fresh run's predecessor in the same folder
    log.keep_epochs(start.epoch)
    previous_seconds, best = start.seconds, start.best
    if keep_best_by:
        best = best or {keep_best_by: math.inf}

    def ship(metrics: dict) -> None:
        for checkpoint in save(metrics):
            log.write_record(checkpoint, metrics, previous_seconds)

    for epoch in range(start.epoch, epochs):
        for part in parts.values():
            if isinstance(part, nn.Module):
                part.train()
        within = start.within_epoch if epoch == start.epoch else None
        if within and within["steps_per_epoch"] != steps_per_epoch:
            raise SystemExit(f"{state_path} was written inside an epoch of {within['steps_per_epoch']} batches, not "
                             f"{steps_per_epoch}: resume it with the batch size and images it was trained with")
        epoch_start = within["epoch_start"] if within else generator_states(parts)
        batches, running = remaining_batches(parts, lambda: epoch_batches(epoch), within)
        done, saved_at = within["batches"] if within else 0, time.monotonic()
        progress = tqdm(batches, total=steps_per_epoch, initial=done, desc=f"{log.name} epoch {epoch + 1}/{epochs}")
        for batch in progress:
            running.add(step(batch), batch_weight(batch) if batch_weight else 1)
            progress.set_postfix({key: f"{value:.4g}" for key, value in running.means.items()})
            done += 1
            if time.monotonic() - saved_at >= STATE_EVERY_SECONDS and done < steps_per_epoch:
                save_state(state_path, parts, epoch, round(previous_seconds + log.elapsed(), 1), best,
                           {"batches": done, "steps_per_epoch": steps_per_epoch, "running": running.state(),
                            "epoch_start": epoch_start})
                saved_at = time.monotonic()
        metrics = {"epoch": epoch + 1, **{f"train_{key}": value for key, value in running.means.items()}, **validate()}
        metrics["seconds"] = round(previous_seconds + log.elapsed(), 1)
        log.epoch(metrics)
        tqdm.write(str(metrics))
        if keep_best_by and metrics[keep_best_by] < best[keep_best_by]:
            best = metrics
            ship(best)
        save_state(state_path, parts, epoch + 1, metrics["seconds"], best)

    if keep_best_by:
        return best
    history = log.history()
    last = history[-1] if history else {}
    ship(last)
    return last


def remaining_batches(parts: dict[str, Any], epoch_batches: Callable[[], Iterable[Any]],
                      within: dict | None) -> tuple[Iterator[Any], RunningMeans]:
    """The epoch's batches still to take and the running means so far: all of them and none, or, resuming inside
    the epoch, those after the ``within["batches"]`` done (replayed from the generators' states at the epoch's
    start, which are then set back to the states saved) and the means saved."""
    if not within:
        return iter(epoch_batches()), RunningMeans()
    saved = generator_states(parts)
    set_generator_states(parts, within["epoch_start"])
    batches = iter(epoch_batches())
    for _ in range(within["batches"]):
        next(batches)
    set_generator_states(parts, saved)
    return batches, RunningMeans.from_state(within["running"])

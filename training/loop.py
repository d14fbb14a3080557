"""The training loop every trainer runs: resume, epochs of steps, a metrics line per epoch, the epoch kept.

    <name>.state.pt ──(--resume)──▶ for each remaining epoch:
        every module in train mode ─▶ step(batch) for each of epoch_batches(epoch)   (tqdm: running means)
        ─▶ {"epoch", "train_<step's keys>", **validate(), "seconds"} ─▶ <name>.metrics.jsonl
        ─▶ lowest keep_best_by so far? save() + record        ─▶ <name>.state.pt
    keep_best_by=None: after the last epoch, save() + record of the last epoch

A trainer builds its data, models and optimisers and hands ``fit`` only what is its own: the parts of the
resumable state, an epoch's batches, one optimisation step, the validation, and how its weights are shipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from pmc2.training.records import RunLog, restore_state, save_state


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
    first_epoch, previous_seconds, best = 0, 0.0, None
    if resume and state_path.exists():
        first_epoch, previous_seconds, best = restore_state(state_path, parts)
    if keep_best_by:
        best = best or {keep_best_by: math.inf}

    def ship(metrics: dict) -> None:
        for checkpoint in save(metrics):
            log.write_record(checkpoint, metrics, previous_seconds)

    for epoch in range(first_epoch, epochs):
        for part in parts.values():
            if isinstance(part, nn.Module):
                part.train()
        running = RunningMeans()
        progress = tqdm(epoch_batches(epoch), total=steps_per_epoch, desc=f"{log.name} epoch {epoch + 1}/{epochs}")
        for batch in progress:
            running.add(step(batch), batch_weight(batch) if batch_weight else 1)
            progress.set_postfix({key: f"{value:.4g}" for key, value in running.means.items()})
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

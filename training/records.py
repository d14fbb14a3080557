"""Checkpoints that can be resumed, and the provenance record written next to each one."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pmc2.runtime.paths import REPO_ROOT
from pmc2.training.atomic_files import replace_atomically
from pmc2.training.weight_shards import load_sharded


def record_path(checkpoint: Path) -> Path:
    """Where the record of the run that wrote ``checkpoint`` lives: beside it, ``<name>.record.json``."""
    return checkpoint.with_suffix(".record.json")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_commit() -> str:
    """The repository's HEAD commit, with ``+dirty`` when tracked files changed."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO_ROOT).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


class RunLog:
    """Per-epoch metrics as JSON lines, plus the final record beside the checkpoint."""

    def __init__(self, out: Path, name: str, data_sha256: str, config: dict[str, Any]) -> None:
        self.out, self.name = out, name
        self.data_sha256, self.config = data_sha256, config
        out.mkdir(parents=True, exist_ok=True)
        self.metrics_path = out / f"{name}.metrics.jsonl"
        self.started = time.time()
        self.commit = git_commit()  # the code that trains, not whatever HEAD is when training ends

    def epoch(self, metrics: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(metrics) + "\n")

    def keep_epochs(self, epochs: int) -> None:
        """Drop the metrics lines after the first ``epochs`` (those of epochs a resumed run takes again)."""
        history = self.history()
        if len(history) > epochs:
            self.metrics_path.write_text("".join(json.dumps(metrics) + "\n" for metrics in history[:epochs]))

    def history(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]

    def write_record(self, checkpoint: Path, metrics: dict[str, Any], previous_seconds: float = 0.0) -> None:
        record = {
            "checkpoint": checkpoint.name,
            "checkpoint_sha256": sha256_file(checkpoint),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "git_commit": self.commit,
            "data_sha256": self.data_sha256,
            "config": self.config,
            "wall_time_seconds": round(previous_seconds + time.time() - self.started, 1),
            "torch_version": torch.__version__,
            "metrics": metrics,
        }
        record_path(checkpoint).write_text(json.dumps(record, indent=2) + "\n")

    def elapsed(self) -> float:
        return time.time() - self.started


def shipping_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors as float16 for the shipped checkpoints (half the size; loading into a
    float32 model converts back). Training states for --resume stay float32."""
    return {key: value.half() if value.is_floating_point() else value for key, value in state_dict.items()}


GLOBAL_GENERATOR = "torch_global_generator"  # a state's key for torch.get_rng_state()


def save_state(path: Path, parts: dict[str, Any], epoch: int, seconds: float, best: dict | None = None,
               within_epoch: dict | None = None) -> None:
    """Atomically write a resumable state: every part's state (modules, optimisers, schedulers,
    torch.Generator) and torch's global generator's (CompressAI's quantisation noise draws from it), plus the
    epochs done, the seconds spent, the best metrics so far and, for a state written inside an epoch, what resuming
    there takes (``training.loop``)."""
    state = {name: part.state_dict() for name, part in parts.items() if not isinstance(part, torch.Generator)}
    buffer = io.BytesIO()
    torch.save({**state, **generator_states(parts), "epoch": epoch, "seconds": seconds, "best": best,
                "within_epoch": within_epoch}, buffer)
    replace_atomically(path, buffer.getvalue())


@dataclass(frozen=True)
class ResumePoint:
    """Where a saved state resumes: after ``epoch`` epochs and, inside the next, as ``within_epoch`` says."""

    epoch: int
    seconds: float
    best: dict | None
    within_epoch: dict | None = None


def restore_state(path: Path, parts: dict[str, Any]) -> ResumePoint:
    """Load what ``save_state`` wrote into ``parts`` and torch's global generator (where it was saved: states
    written before it was are resumed with the generator as seeded)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    for name, part in parts.items():
        if not isinstance(part, torch.Generator):
            part.load_state_dict(state[name])
    generators = [name for name, part in parts.items() if isinstance(part, torch.Generator)]
    set_generator_states(parts, {name: state[name] for name in generators}  # states before it lack the global one
                         | ({GLOBAL_GENERATOR: state[GLOBAL_GENERATOR]} if GLOBAL_GENERATOR in state else {}))
    return ResumePoint(state["epoch"], state["seconds"], state.get("best"), state.get("within_epoch"))


def generator_states(parts: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The states of the parts' torch.Generators and of torch's global generator."""
    return {GLOBAL_GENERATOR: torch.get_rng_state(),
            **{name: part.get_state() for name, part in parts.items() if isinstance(part, torch.Generator)}}


def set_generator_states(parts: dict[str, Any], states: dict[str, torch.Tensor]) -> None:
    for name, state in states.items():
        if name == GLOBAL_GENERATOR:
            torch.set_rng_state(state)
        else:
            parts[name].set_state(state)


def load_initial_weights(model: torch.nn.Module, checkpoint: Path) -> dict[str, Any]:
    """Copy a shipped checkpoint's weights into ``model`` (fine-tuning) and return what the new
    record should say about where they came from: the file, its sha256 and its own record."""
    model.load_state_dict(load_sharded(checkpoint)["state_dict"])
    record_file = record_path(checkpoint)
    return {
        "file": str(checkpoint),
        "sha256": sha256_file(checkpoint),
        "record": json.loads(record_file.read_text()) if record_file.exists() else None,
    }


def _lineage(record: dict, not_counting: frozenset[str]) -> Iterator[dict]:
    """``record`` and the records of the checkpoints it started from (``config.init``: one start, or one per model
    of an end-to-end run), depth first; a checkpoint whose sha256 is in ``not_counting`` ends its branch."""
    if record.get("checkpoint_sha256") in not_counting:
        return
    yield record
    init = record.get("config", {}).get("init")
    starts = [] if not isinstance(init, dict) else [init] if "record" in init else [
        start for start in init.values() if isinstance(start, dict)]
    for start in starts:
        if start.get("record"):
            yield from _lineage(start["record"], not_counting)


def lineage_hours(checkpoint: Path, not_counting: frozenset[str] = frozenset()) -> float | None:
    """Wall-clock hours in the training record of ``checkpoint`` and of every checkpoint it started from, each run
    up to the epoch it kept and counted once (an end-to-end run records itself beside each of its models); the
    branches at checkpoints whose sha256 is in ``not_counting`` (e.g. the target's own) are left out. None when
    ``checkpoint`` has no record."""
    path = record_path(checkpoint)
    if not path.exists():
        return None
    runs = {(run["command"], run.get("git_commit"), json.dumps(run.get("metrics"), sort_keys=True)): run["wall_time_seconds"]
            for run in _lineage(json.loads(path.read_text()), not_counting)}
    return sum(runs.values()) / 3600

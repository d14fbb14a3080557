"""An attempt at a fit's stage: its id and the time it spent, written down every so often (a heartbeat) so that a
run killed outright (SIGKILL, a session or machine that stops) still counts it: the next ``--resume`` files the
attempt under ``interrupted`` unless the record already holds it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pmc2.training.atomic_files import replace_atomically

HEARTBEAT = "attempt.json"
KILLED = "killed (time as of its last heartbeat)"


@dataclass(frozen=True)
class Attempt:
    """When an attempt at a stage began: wall clock, and this process's CPU time (every thread, user and system)."""

    wall_start: float = field(default_factory=time.perf_counter)
    cpu_start: float = field(default_factory=time.process_time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def spent(self) -> dict[str, float | str]:
        """Its id and its time so far, as the record keeps them."""
        return {"attempt": self.id, "seconds": round(time.perf_counter() - self.wall_start, 1),
                "cpu_seconds": round(time.process_time() - self.cpu_start, 1)}


@contextmanager
def heartbeat(out: Path, stage: str, attempt: Attempt, every: float) -> Iterator[None]:
    """Within: ``<out>/attempt.json`` written at once and rewritten every ``every`` seconds with the stage and
    ``attempt.spent()`` (so a run killed at any moment has begun the stage on disk); the beats stop when the block
    ends, and the file goes once the record holds the attempt (``forget_heartbeat``)."""
    stop = threading.Event()

    def write() -> None:
        replace_atomically(out / HEARTBEAT, json.dumps({"stage": stage, **attempt.spent()}).encode())

    def beat() -> None:
        while not stop.wait(every):
            write()

    write()

    thread = threading.Thread(target=beat, name="fit heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def file_killed_attempt(out: Path, record: dict) -> None:
    """The attempt a killed run left a heartbeat of, under ``record["interrupted"]``, unless the record already
    holds it (a run killed after writing its record, before removing the heartbeat)."""
    path = out / HEARTBEAT
    if not path.exists():
        return
    beat = json.loads(path.read_text())
    kept = [*record["stages"].values(), *record.get("interrupted", []), *record.get("superseded", [])]
    if beat.get("attempt") not in {entry.get("attempt") for entry in kept}:
        record.setdefault("interrupted", []).append({**beat, "ended_by": KILLED})


def forget_heartbeat(out: Path) -> None:
    (out / HEARTBEAT).unlink(missing_ok=True)

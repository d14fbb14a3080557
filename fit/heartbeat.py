"""The running attempt's time, written down every so often, so that a fit killed outright (SIGKILL, a session or
machine that stops) still counts what it spent: the next ``--resume`` files it under ``interrupted``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from pmc2.training.atomic_files import replace_atomically

HEARTBEAT = "attempt.json"
KILLED = "killed (time as of its last heartbeat)"


class Timed(Protocol):
    def spent(self) -> dict[str, float]: ...


@contextmanager
def heartbeat(out: Path, stage: str, attempt: Timed, every: float) -> Iterator[None]:
    """Within: ``<out>/attempt.json`` rewritten every ``every`` seconds with the stage and the attempt's time so
    far; removed when the block ends (the record then holds the attempt, done or interrupted)."""
    path, stop = out / HEARTBEAT, threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            replace_atomically(path, json.dumps({"stage": stage, **attempt.spent()}).encode())

    thread = threading.Thread(target=beat, name="fit heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        path.unlink(missing_ok=True)


def file_killed_attempt(out: Path, record: dict) -> None:
    """The attempt a killed run left a heartbeat of, under ``record["interrupted"]`` (the caller writes the record,
    then removes the heartbeat with ``forget_heartbeat``)."""
    path = out / HEARTBEAT
    if path.exists():
        record.setdefault("interrupted", []).append({**json.loads(path.read_text()), "ended_by": KILLED})


def forget_heartbeat(out: Path) -> None:
    (out / HEARTBEAT).unlink(missing_ok=True)

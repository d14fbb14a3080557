"""Files written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def replace_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step, on disk before it takes the name: a reader (or a run resumed after
    a crash) never sees half of it."""
    partial = path.with_suffix(path.suffix + ".partial")
    with partial.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)

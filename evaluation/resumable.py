"""An evaluation run's parts kept on disk as each one finishes, so that a run stopped part-way resumes there.

    python -m pmc2.evaluation --parts runs/evaluation_parts            # keeps each part as it finishes
    python -m pmc2.evaluation --parts runs/evaluation_parts --resume   # after a stop: measures only what is missing

The full evaluation takes hours on two cores; a session that ends part-way would otherwise lose all of it. A
part is taken back only by the same run: the same code (HEAD and a digest of the tracked files' changes, so
models and code alike), the same data and the same arguments, all written in ``key.json`` beside the parts.
Anything else is refused, so a report is always one code state's measurement, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pmc2.runtime.paths import REPO_ROOT
from pmc2.training.records import git_commit

T = TypeVar("T")
KEY = "key.json"


def code_state() -> str:
    """HEAD, and a digest of ``git diff HEAD`` when tracked files differ from it."""
    diff = subprocess.run(["git", "diff", "--binary", "HEAD"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    commit = git_commit().removesuffix("+dirty")
    return commit if not diff else f"{commit}+{hashlib.sha256(diff).hexdigest()[:16]}"


class PartStore:
    """Parts of one run under ``folder`` (None: nothing is kept), each computed once for ``key``."""

    def __init__(self, folder: Path | None, key: dict, resume: bool) -> None:
        self.folder = folder
        if folder is None:
            if resume:
                raise SystemExit("--resume continues the run kept in --parts: give --parts")
            return
        key_file = folder / KEY
        if key_file.exists():
            kept = json.loads(key_file.read_text())
            if not resume:
                raise SystemExit(f"{folder} holds the parts of a run: give --resume to continue it, or another --parts")
            differing = sorted(name for name in kept.keys() | key.keys() if kept.get(name) != key.get(name))
            if differing:
                raise SystemExit(f"{folder} holds the parts of another run (its {', '.join(differing)} differ); "
                                 "give another --parts")
        elif resume:
            raise SystemExit(f"--resume: {folder} holds no run to continue")
        folder.mkdir(parents=True, exist_ok=True)
        key_file.write_text(json.dumps(key, indent=2) + "\n")

    def _path(self, name: str) -> Path:
        return self.folder / f"{re.sub(r'[^A-Za-z0-9+._-]', '_', name)}.pickle"

    def get(self, name: str, compute: Callable[[], T]) -> T:
        """Part ``name``: the one kept, or ``compute()``'s result, kept before it is returned."""
        if self.folder is None:
            return compute()
        path = self._path(name)
        if path.exists():
            with path.open("rb") as kept:  # written by this class, in this run's own folder
                return pickle.load(kept)
        value = compute()
        partial = path.with_suffix(".partial")
        with partial.open("wb") as handle:
            pickle.dump(value, handle)
        partial.replace(path)
        return value

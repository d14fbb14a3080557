"""An evaluation run's parts kept on disk as each one finishes, so that a run stopped part-way resumes there.

    python -m pmc2.evaluation --parts runs/evaluation_parts            # keeps each part as it finishes
    python -m pmc2.evaluation --parts runs/evaluation_parts --resume   # after a stop: measures only what is missing

The full evaluation takes hours on two cores; a session that ends part-way would otherwise lose all of it. A
part is taken back only by the same run, whose key (``key.json`` beside the parts) holds everything that shapes
a part: the code (HEAD, and a digest of tracked changes and untracked files), the models read (the checkpoint
and bundle folders' contents, wherever ``PMC2_CHECKPOINTS``/``PMC2_MODELS`` put them), the data, the arguments,
the libraries and the machine (the parts hold timings). Anything else is refused, so a report is always one
state's measurement, never a mix.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import pickle
import re
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from pmc2.machine import cpu_model
from pmc2.runtime.cpu_budget import available_cpus
from pmc2.runtime.paths import CHECKPOINTS, ONNX_MODELS, REPO_ROOT
from pmc2.training.atomic_files import replace_atomically

T = TypeVar("T")
KEY_FILE = "key.json"
LIBRARIES = ("torch", "onnxruntime", "numpy", "pillow", "compressai")


def _git(root: Path, *arguments: str) -> bytes:
    try:
        return subprocess.run(["git", *arguments], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"--parts needs the code in a git checkout ({root}): {error}") from None


def _digest(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(len(chunk).to_bytes(8, "big") + chunk)
    return digest.hexdigest()[:16]


def code_state(root: Path = REPO_ROOT, ignoring: Path | None = None) -> str:
    """HEAD, then (when the checkout differs from it) a digest of the tracked changes and of every untracked file,
    name and content, but those under ``ignoring`` (the parts' own folder)."""
    head = _git(root, "rev-parse", "HEAD").decode().strip()
    diff = _git(root, "diff", "--binary", "--no-ext-diff", "--no-textconv", "--no-color", "HEAD")
    listed = _git(root, "ls-files", "-z", "--others", "--exclude-standard").split(b"\0")
    untracked = sorted(name for name in listed
                       if name and not (ignoring and (root / name.decode()).resolve().is_relative_to(ignoring.resolve())))
    if not diff and not untracked:
        return head
    untracked_files = (part for name in untracked for part in (name, (root / name.decode()).read_bytes()))
    return f"{head}+{_digest([diff, *untracked_files])}"


def folder_digest(folder: Path) -> str:
    """A digest of every file under ``folder``: relative names and contents."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return _digest(part for path in files for part in (str(path.relative_to(folder)).encode(), path.read_bytes()))


def run_state(parts: Path) -> dict:
    """What shapes every part besides the run's own arguments and data: code, models, libraries, machine."""
    return {"code": code_state(ignoring=parts), "checkpoints": folder_digest(CHECKPOINTS),
            "models": folder_digest(ONNX_MODELS), "libraries": {name: importlib.metadata.version(name) for name in LIBRARIES},
            "cpu": cpu_model(), "cpus": available_cpus()}


class PartStore:
    """Parts of one run under ``folder`` (None: nothing is kept), each computed once for ``key``; ``taken_back``
    lists the parts an earlier invocation measured."""

    def __init__(self, folder: Path | None, key: dict, resume: bool) -> None:
        self.folder, self.taken_back = folder, []
        if folder is None:
            if resume:
                raise SystemExit("--resume continues the run kept in --parts: give --parts")
            return
        key_file = folder / KEY_FILE
        if key_file.exists():
            kept = json.loads(key_file.read_text())
            if not resume:
                raise SystemExit(f"{folder} holds the parts of a run: give --resume to continue it, or another --parts")
            differing = sorted(name for name in kept.keys() | key.keys() if kept.get(name) != key.get(name))
            if differing:
                raise SystemExit(f"{folder} holds the parts of another run (its {', '.join(differing)} differ); "
                                 "give another --parts, or empty this one to start over")
            return
        if resume:
            raise SystemExit(f"--resume: {folder} holds no run to continue")
        if folder.exists() and any(folder.iterdir()):
            raise SystemExit(f"--parts {folder} is not empty and holds no {KEY_FILE}: give an empty or new folder")
        folder.mkdir(parents=True, exist_ok=True)
        replace_atomically(key_file, json.dumps(key, indent=2).encode() + b"\n")

    def _path(self, name: str) -> Path:
        return self.folder / f"{re.sub(r'[^A-Za-z0-9+._-]', '_', name)}.pickle"

    def get(self, name: str, compute: Callable[[], T]) -> T:
        """Part ``name``: the one kept, or ``compute()``'s result, kept before it is returned (nothing is kept when
        ``compute`` raises)."""
        if self.folder is None:
            return compute()
        path = self._path(name)
        if path.exists():
            try:
                with path.open("rb") as kept:  # written by this class, in this run's own folder
                    value = pickle.load(kept)
            except (OSError, EOFError, pickle.UnpicklingError) as error:
                raise SystemExit(f"the kept part {path} cannot be read ({error}): delete it to measure it again") from None
            self.taken_back.append(name)
            return value
        value = compute()
        replace_atomically(path, pickle.dumps(value))
        return value

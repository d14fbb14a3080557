"""Every default location of the project's files, in one place.

In a source checkout the defaults point into it. An installed wheel has no checkout: its servers take a
model bundle from ``--models`` or the ``PMC2_MODELS`` environment variable. ``PMC2_CHECKPOINTS`` points the
trainers' and the evaluation's checkpoint folder elsewhere (e.g. to evaluate an earlier commit's models).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout (or, installed, site-packages/pmc2)
BUNDLED_DATA = REPO_ROOT / "data"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "cifar10"
CHECKPOINTS = Path(os.environ["PMC2_CHECKPOINTS"]) if os.environ.get("PMC2_CHECKPOINTS") else REPO_ROOT / "checkpoints"
ONNX_MODELS = Path(os.environ["PMC2_MODELS"]) if os.environ.get("PMC2_MODELS") else REPO_ROOT / "onnx_models"
REPORTS = REPO_ROOT / "reports"

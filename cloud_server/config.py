"""Configuration of the cloud server (one object, passed to create_app)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pmc2.runtime.model_bundle import DEFAULT_MODELS
from pmc2.runtime.sessions import SessionSettings


@dataclass(frozen=True)
class CloudConfig:
    models: Path = DEFAULT_MODELS
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_images: int = 1024
    max_image_pixels: int = 1024 * 1024
    sessions: SessionSettings = field(default_factory=SessionSettings)

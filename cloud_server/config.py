"""Configuration of the cloud server (one object, passed to create_app)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pmc2.runtime.model_bundle import DEFAULT_MODELS
from pmc2.runtime.sessions import SessionSettings
from pmc2.value_ranges import NON_NEGATIVE, POSITIVE, check_fields


@dataclass(frozen=True)
class CloudConfig:
    models: Path = DEFAULT_MODELS
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_images: int = 1024
    max_image_pixels: int = 1024 * 1024
    max_batch_size: int = 256  # micro-batching: most images per target call
    max_wait_ms: float = 2.0  # micro-batching: longest an image waits for company while a batch runs
    max_queued_images: int = 4096  # beyond this many outstanding images, answer 503 with Retry-After
    # per-client rate limit on /v1/classify (a token bucket; None: no limit): beyond it, 429 with Retry-After
    client_images_per_s: float | None = None
    client_burst_images: int = 256  # the bucket's size: the most images a client may send at once
    sessions: SessionSettings = field(default_factory=SessionSettings)

    def __post_init__(self) -> None:
        check_fields(self, {
            "max_body_bytes": POSITIVE, "max_batch_images": POSITIVE, "max_image_pixels": POSITIVE,
            "max_batch_size": POSITIVE, "max_wait_ms": NON_NEGATIVE, "max_queued_images": POSITIVE,
            "client_images_per_s": POSITIVE, "client_burst_images": POSITIVE,
        })

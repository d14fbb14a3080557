"""Configuration of the edge server (one object, passed to create_app)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pmc2.runtime.image_decoding import RESIZE_POLICIES
from pmc2.runtime.link_codecs import DEFAULT_CODEC, codec_named
from pmc2.runtime.model_bundle import DEFAULT_MODELS
from pmc2.runtime.protection import DEFAULT_PROTECTOR, protector_named
from pmc2.runtime.sessions import SessionSettings
from pmc2.value_ranges import JPEG_QUALITY, NON_NEGATIVE, POSITIVE, WEBP_QUALITY, check_fields


@dataclass(frozen=True)
class EdgeConfig:
    cloud_url: str = "https://localhost:8443"
    cloud_ca: Path | None = None  # CA that signed the cloud's certificate (None: system trust store)
    cloud_client_cert: Path | None = None  # PEM with key and certificate, for mutual TLS to the cloud
    token: str | None = None  # bearer token every client must present
    allow_unauthenticated: bool = False  # development only: serve without a token
    codec: str = DEFAULT_CODEC
    protector: str = DEFAULT_PROTECTOR  # unless a request asks for another (?protector=)
    jpeg_quality: int = 95
    webp_quality: int | None = None  # None: lossless WebP
    resize_policy: str = "resize"  # or "reject": inputs that are not 32x32
    max_batch_size: int = 256  # micro-batching: most images per generator call
    max_wait_ms: float = 2.0  # micro-batching: longest an image waits for company
    max_queued_images: int = 4096  # beyond this many outstanding images per codec, answer 503 with Retry-After
    max_body_bytes: int = 8 * 1024 * 1024
    max_request_images: int = 256
    max_image_pixels: int = 4096 * 4096
    cloud_timeout_s: float = 10.0
    cloud_connect_retries: int = 2
    models: Path = DEFAULT_MODELS
    model_key_uri: str | None = None  # kbs:///…, file:///… or env://…: key of AES-GCM-encrypted models
    sessions: SessionSettings = field(default_factory=SessionSettings)

    def __post_init__(self) -> None:
        if self.token is None and not self.allow_unauthenticated:
            raise ValueError("the edge needs a bearer token (PMC2_EDGE_TOKEN, --token-uri); serving without one "
                             "takes --insecure-dev-no-auth")
        if self.token is not None and self.allow_unauthenticated:
            raise ValueError("give a token or allow unauthenticated access, not both")
        if self.resize_policy not in RESIZE_POLICIES:
            raise ValueError(f"resize_policy must be one of {', '.join(RESIZE_POLICIES)}, got {self.resize_policy!r}")
        codec_named(self.codec)
        protector_named(self.protector)
        check_fields(self, {
            "jpeg_quality": JPEG_QUALITY, "webp_quality": WEBP_QUALITY, "max_batch_size": POSITIVE,
            "max_wait_ms": NON_NEGATIVE, "max_queued_images": POSITIVE, "max_body_bytes": POSITIVE,
            "max_request_images": POSITIVE, "max_image_pixels": POSITIVE, "cloud_timeout_s": POSITIVE,
            "cloud_connect_retries": NON_NEGATIVE,
        })

"""Per-client rate limiting: one token bucket of images for each client.

    client ──take(client, n)──▶ its bucket (refills at ``images_per_s``, holds at most ``burst``)
                                   ├─ n tokens there ─▶ taken; the request goes on
                                   └─ short ──────────▶ RateLimited (429, Retry-After: when n will be there)

A client is the subject of its TLS certificate when it presented one (mutual TLS), else its address.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web


class RateLimited(RuntimeError):
    """The client sent more images than its rate allows; it may try again after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OverBurst(ValueError):
    """One request holds more images than a client's bucket can ever hold: waiting would not help."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by client. Buckets that have refilled completely are forgotten once more than
    ``max_clients`` are kept (a full bucket is the same as a new one)."""

    def __init__(self, images_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 4096) -> None:
        self.images_per_s, self.burst, self.clock, self.max_clients = images_per_s, burst, clock, max_clients
        self.buckets: dict[str, _Bucket] = {}

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(self.burst, bucket.tokens + (now - bucket.updated) * self.images_per_s)

    def take(self, client: str, images: int) -> None:
        """Take ``images`` tokens from ``client``'s bucket, or raise RateLimited (OverBurst beyond the burst)."""
        if images > self.burst:
            raise OverBurst(f"a request may hold at most {self.burst} images at this server's rate limit, not {images}")
        now = self.clock()
        bucket = self.buckets.get(client) or _Bucket(float(self.burst), now)
        bucket.tokens, bucket.updated = self._refilled(bucket, now), now
        if bucket.tokens < images:
            wait_s = (images - bucket.tokens) / self.images_per_s
            self.buckets[client] = bucket
            raise RateLimited(f"rate limit of {self.images_per_s:g} images/s (burst {self.burst}) reached; "
                              f"retry in {wait_s:.2f} s", retry_after_s=max(1, math.ceil(wait_s)))
        bucket.tokens -= images
        self.buckets[client] = bucket
        if len(self.buckets) > self.max_clients:
            self.buckets = {name: kept for name, kept in self.buckets.items() if self._refilled(kept, now) < self.burst}


def client_identity(request: web.Request) -> str:
    """``subject:<RDNs>`` of the client's verified TLS certificate, else ``address:<peer address>``."""
    transport = request.transport
    certificate = transport.get_extra_info("peercert") if transport is not None else None
    if certificate and certificate.get("subject"):
        return "subject:" + ",".join(f"{key}={value}" for rdn in certificate["subject"] for key, value in rdn)
    return f"address:{request.remote}"

"""Black-box access to a running PMC² cloud: images the fitting run chooses go to its POST /v1/classify as PNG link
batches, and labels come back. The cloud answers one label per image and no probabilities, so that is all a
black-box fit learns.

    uint8 images ──PNG (lossless: the cloud classifies exactly these pixels)──▶ EncodedBatch ──HTTPS──▶ /v1/classify
    200 → labels · 429/503 → wait Retry-After, send the same batch again · anything else → CloudRefused
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from pmc2.fit.access import BlackBoxLabeler
from pmc2.runtime.link_codecs import CodecContext, codec_named
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
from pmc2.serving.tls import client_context

LINK = "png"  # lossless, so the answer is the target's for the very pixels sent
CLASSIFY_PATH = "/v1/classify"
COME_BACK_LATER = (429, 503)  # the cloud's rate limit and its full queue, both with Retry-After


class CloudRefused(RuntimeError):
    """The cloud answered with an error that waiting does not cure, or kept refusing past the longest wait."""


def tls_context(ca: Path | None, client_cert: Path | None) -> ssl.SSLContext:
    """Verifies the cloud against ``ca`` (None: the system's CAs); presents ``client_cert`` (PEM with its key) for
    mutual TLS."""
    if ca is not None:
        return client_context(ca, client_cert, client_cert)
    context = ssl.create_default_context()
    if client_cert is not None:
        context.load_cert_chain(client_cert)
    return context


class CloudLabeler(BlackBoxLabeler):
    """Over one kept-alive HTTPS connection (one the cloud closed while idle is opened again). Every HTTPS request
    is counted: ``count.requests`` those answered, ``count.throttled`` those refused for now and sent again."""

    def __init__(self, url: str, ca: Path | None = None, client_cert: Path | None = None, batch_images: int = 64,
                 timeout_s: float = 60.0, max_wait_s: float = 600.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(f"the cloud at {url}", batch_images)
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or not parts.path.endswith(CLASSIFY_PATH):
            raise ValueError(f"a cloud target is its classify URL, https://host[:port]{CLASSIFY_PATH}; got {url!r}")
        self.host, self.port, self.path = parts.hostname, parts.port or 443, parts.path
        self.timeout_s, self.max_wait_s, self.sleep = timeout_s, max_wait_s, sleep
        self.waited_s = 0.0  # time spent waiting for the cloud to take requests again
        self._tls = tls_context(ca, client_cert)
        self._link = codec_named(LINK).build(CodecContext())
        self._connection: http.client.HTTPSConnection | None = None

    def _query(self, images_uint8: np.ndarray) -> np.ndarray:
        body = EncodedBatch(LINK, self._link.encode(to_unit_nchw(images_uint8))).to_bytes()
        while True:
            status, retry_after, reply = self._post(body)
            if status == 200:
                return np.asarray(json.loads(reply)["labels"], dtype=np.int64)
            message = f"{self.via} answered {status}: {_error_text(reply)}"
            if status not in COME_BACK_LATER:
                raise CloudRefused(message)
            wait_s = _seconds(retry_after)
            if self.waited_s + wait_s > self.max_wait_s:
                raise CloudRefused(f"{message}; still refused after waiting {self.waited_s:.0f} s in all")
            self.count.throttled += 1
            self.waited_s += wait_s
            self.sleep(wait_s)

    def _post(self, body: bytes) -> tuple[int, str | None, bytes]:
        for attempt in range(2):
            if self._connection is None:
                self._connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s,
                                                               context=self._tls)
            try:
                self._connection.request("POST", self.path, body, {"Content-Type": CONTENT_TYPE})
                response = self._connection.getresponse()
                return response.status, response.getheader("Retry-After"), response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _seconds(retry_after: str | None) -> float:
    """Retry-After in seconds, at least 1 (this project's servers send whole seconds; a date or nothing: 1 s)."""
    try:
        return max(1.0, float(retry_after))
    except (TypeError, ValueError):
        return 1.0


def _error_text(reply: bytes) -> str:
    try:
        return str(json.loads(reply).get("error", ""))
    except (ValueError, AttributeError):
        return reply[:200].decode(errors="replace")

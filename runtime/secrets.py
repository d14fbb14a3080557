"""Secrets for the edge: from the Confidential Data Hub (after attestation) or, in development,
from a file or an environment variable.

    kbs:///<repository>/<type>/<tag>  → GET http://127.0.0.1:8006/cdh/resource/<repository>/<type>/<tag>
    file:///run/secrets/model.key     → the file's bytes
    env://PMC2_MODEL_KEY              → the variable's value, hex-decoded when it is hex
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

CDH_URL = os.environ.get("PMC2_CDH_URL", "http://127.0.0.1:8006")


class SecretUnavailable(RuntimeError):
    """A secret could not be obtained; the message names the URI and the reason."""


def fetch_secret(uri: str, cdh_url: str = CDH_URL, timeout_s: float = 10.0) -> bytes:
    parsed = urlparse(uri)
    if parsed.scheme == "kbs":
        resource = parsed.path.strip("/")
        if resource.count("/") != 2:
            raise SecretUnavailable(f"{uri}: a KBS resource URI is kbs:///<repository>/<type>/<tag>")
        try:
            with urllib.request.urlopen(f"{cdh_url}/cdh/resource/{resource}", timeout=timeout_s) as response:
                return response.read()
        except (urllib.error.URLError, OSError) as error:
            raise SecretUnavailable(f"{uri}: the confidential data hub at {cdh_url} did not release it ({error})") from error
    if parsed.scheme == "file":
        try:
            return Path(parsed.path).read_bytes()
        except OSError as error:
            raise SecretUnavailable(f"{uri}: {error}") from error
    if parsed.scheme == "env":
        value = os.environ.get(parsed.netloc)
        if value is None:
            raise SecretUnavailable(f"{uri}: environment variable {parsed.netloc} is not set")
        try:
            return bytes.fromhex(value)
        except ValueError:
            return value.encode()
    raise SecretUnavailable(f"{uri}: unsupported scheme (use kbs:///, file:/// or env://)")


def materialize_secret(uri: str, directory: Path, name: str) -> Path:
    """Write a secret to a private file (for APIs such as ssl that want a path), mode 0600."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(fetch_secret(uri))
    return path

"""AES-256-GCM for model files at rest: the edge decrypts in memory with a key from the data hub.

    file = b"PMC2ENC1" ‖ 12-byte nonce ‖ ciphertext+tag      (associated data: the model's name)

    python -m pmc2.runtime.model_encryption --models onnx_models --names generator,g_a --key-file model.key
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"PMC2ENC1"
NONCE_BYTES = 12


class ModelDecryptionError(RuntimeError):
    """Wrong key, or the encrypted file was altered."""


def encrypt_model(plaintext: bytes, key: bytes, name: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, name.encode())


def decrypt_model(blob: bytes, key: bytes, name: str) -> bytes:
    if not blob.startswith(MAGIC):
        raise ModelDecryptionError(f"{name}: not a PMC2ENC1 encrypted model")
    if len(key) != 32:
        raise ModelDecryptionError(f"{name}: the model key must be 32 bytes (AES-256), got {len(key)}")
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES :], name.encode())
    except InvalidTag as error:
        raise ModelDecryptionError(f"{name}: wrong key or tampered file") from error


def encrypt_bundle(folder: Path, names: list[str], key: bytes) -> None:
    """Write <name>.onnx.enc for each model and record it in the manifest (plaintext sha256 stays)."""
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for name in names:
        entry = manifest["models"][name]
        blob = encrypt_model((folder / entry["file"]).read_bytes(), key, name)
        encrypted = f"{entry['file']}.enc"
        (folder / encrypted).write_bytes(blob)
        entry["encrypted"] = {"file": encrypted, "sha256": hashlib.sha256(blob).hexdigest(), "cipher": "AES-256-GCM"}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="Encrypt model files of an onnx_models folder with AES-256-GCM")
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--names", default="generator,g_a", help="comma-separated model names")
    parser.add_argument("--key-file", type=Path, required=True, help="32-byte key; created if missing")
    args = parser.parse_args()
    if not args.key_file.exists():
        args.key_file.write_bytes(os.urandom(32))
        args.key_file.chmod(0o600)
    encrypt_bundle(args.models, args.names.split(","), args.key_file.read_bytes())


if __name__ == "__main__":
    main()

"""Model integrity and confidentiality: sha256 checks, AES-GCM at rest, secrets from the data hub."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pmc2.runtime.model_bundle import DEFAULT_MODELS, ModelBundle, ModelIntegrityError
from pmc2.runtime.model_encryption import ModelDecryptionError, decrypt_model, encrypt_bundle, encrypt_model
from pmc2.runtime.secrets import SecretUnavailable, fetch_secret

KEY = bytes(range(32))


@pytest.fixture
def encrypted_models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(DEFAULT_MODELS, folder)
    encrypt_bundle(folder, ["generator", "g_a"], KEY)
    for name in ("generator", "g_a"):  # what an edge image ships: ciphertext only
        (folder / f"{name}.onnx").unlink()
    return folder


def test_encrypted_models_load_in_memory_with_the_right_key(encrypted_models: Path) -> None:
    bundle = ModelBundle.open(encrypted_models, model_key=KEY)
    assert bundle.model_bytes("generator") == (DEFAULT_MODELS / "generator.onnx").read_bytes()
    assert bundle.session("g_a").get_inputs()[0].name == "images"


def test_wrong_key_is_refused(encrypted_models: Path) -> None:
    with pytest.raises(ModelIntegrityError, match="wrong key or tampered"):
        ModelBundle.open(encrypted_models, model_key=bytes(32)).model_bytes("generator")


def test_tampered_ciphertext_is_refused(encrypted_models: Path) -> None:
    path = encrypted_models / "generator.onnx.enc"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        ModelBundle.open(encrypted_models, model_key=KEY).model_bytes("generator")


def test_ciphertext_is_bound_to_the_model_name() -> None:
    blob = encrypt_model(b"onnx bytes", KEY, "generator")
    assert decrypt_model(blob, KEY, "generator") == b"onnx bytes"
    with pytest.raises(ModelDecryptionError):
        decrypt_model(blob, KEY, "g_a")


def test_edge_refuses_to_start_with_a_tampered_model(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    shutil.copytree(DEFAULT_MODELS, folder)
    data = bytearray((folder / "generator.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "generator.onnx").write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "pmc2.edge_server", "--cert", str(tmp_path / "unused.pem"), "--models", str(folder)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PMC2_EDGE_TOKEN": "a-token"},
    )
    assert result.returncode != 0
    assert "refusing to start" in result.stderr and "generator.onnx" in result.stderr


class _FakeDataHub(http.server.BaseHTTPRequestHandler):
    """Stands in for the CDH's resource endpoint inside a CoCo pod."""

    resources = {"/cdh/resource/default/pmc2/model-key": KEY}

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        body = self.resources.get(self.path)
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write(body or b"not released")

    def log_message(self, *args) -> None:
        pass


def test_secrets_come_from_the_data_hub_a_file_or_the_environment(tmp_path: Path, monkeypatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeDataHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hub = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert fetch_secret("kbs:///default/pmc2/model-key", cdh_url=hub) == KEY
        with pytest.raises(SecretUnavailable, match="did not release"):
            fetch_secret("kbs:///default/pmc2/other", cdh_url=hub)
    finally:
        server.shutdown()
    (tmp_path / "key").write_bytes(KEY)
    assert fetch_secret(f"file://{tmp_path / 'key'}") == KEY
    monkeypatch.setenv("PMC2_TEST_KEY", KEY.hex())
    assert fetch_secret("env://PMC2_TEST_KEY") == KEY
    with pytest.raises(SecretUnavailable, match="scheme"):
        fetch_secret("https://example.invalid/key")
    with pytest.raises(SecretUnavailable, match="repository"):
        fetch_secret("kbs:///just-one-part")

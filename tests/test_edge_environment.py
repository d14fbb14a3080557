"""The edge's own environment: a fresh venv from deploy/requirements-edge.txt alone (no torch),
serving real requests end to end against a cloud server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

import pytest
from PIL import Image

from pmc2.demo.local_stack import free_port
from pmc2.runtime.cifar10 import REPO_ROOT, load_evaluation
from pmc2.serving.dev_certs import create_dev_certificates
from pmc2.serving.tls import client_context

REQUIREMENTS = REPO_ROOT / "deploy" / "requirements-edge.txt"


def _directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def _wait_ready(url: str, context, process: subprocess.Popen, timeout: float = 120.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        assert process.poll() is None, f"{url} exited with {process.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("edge-venv")
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    for args in (["-r", str(REQUIREMENTS)], ["--no-deps", "compressai==1.2.8"], ["--no-deps", str(REPO_ROOT)]):
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args], check=True, timeout=900)
    return folder


def test_edge_venv_has_no_torch_and_stays_small(edge_venv: Path) -> None:
    python = edge_venv / "bin" / "python"
    result = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert result.returncode != 0
    size = _directory_mb(edge_venv)
    print(f"edge venv installed size: {size:.0f} MB")
    assert size <= 350


def test_edge_from_its_venv_serves_end_to_end(edge_venv: Path, tmp_path: Path) -> None:
    certificates = create_dev_certificates(tmp_path / "certs")
    cloud_port, edge_port = free_port(), free_port()
    cloud_url, edge_url = f"https://localhost:{cloud_port}", f"https://localhost:{edge_port}"
    environment = {**os.environ, "PMC2_EDGE_TOKEN": "venv-token"}
    cloud = subprocess.Popen([sys.executable, "-m", "pmc2.cloud_server", "--port", str(cloud_port),
                              "--cert", str(certificates.cloud), "--threads", "1"])
    started = time.monotonic()
    edge = subprocess.Popen(
        [str(edge_venv / "bin" / "python"), "-m", "pmc2.edge_server", "--port", str(edge_port),
         "--cert", str(certificates.edge), "--cloud-url", cloud_url, "--cloud-ca", str(certificates.ca),
         "--models", str(REPO_ROOT / "onnx_models"), "--threads", "1"],
        env=environment, cwd=tmp_path,
    )
    try:
        context = client_context(certificates.ca)
        _wait_ready(cloud_url, context, cloud)
        _wait_ready(edge_url, context, edge)
        print(f"edge cold start (process start → ready): {time.monotonic() - started:.2f} s")
        buffer = io.BytesIO()
        Image.fromarray(load_evaluation(None).images[0]).save(buffer, format="JPEG", quality=90)
        request = urllib.request.Request(f"{edge_url}/v1/recognize", data=buffer.getvalue(), method="POST",
                                         headers={"Content-Type": "image/jpeg", "Authorization": "Bearer venv-token"})
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            assert response.status == 200
            assert b'"labels"' in response.read()
    finally:
        for process in (edge, cloud):
            process.terminate()
            process.wait(timeout=30)

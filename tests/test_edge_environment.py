"""The edge's own environment: the built wheel with only its ``runtime`` extra (plus CompressAI's rANS
extension, installed without its dependencies) in a fresh venv with no torch, serving real requests
from outside the checkout; and the pinned deploy requirements checked against that extra."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
import venv
from configparser import ConfigParser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from PIL import Image

from pmc2.serving.local_stack import free_port
from pmc2.runtime.cifar10 import CLASSES, load_evaluation
from pmc2.runtime.paths import REPO_ROOT
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


def _runtime_requirements() -> dict[str, Requirement]:
    """install_requires + the ``runtime`` extra of setup.cfg, by package name."""
    config = ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].split() + config["options.extras_require"]["runtime"].split()
    return {(r := Requirement(line)).name.lower().replace("_", "-"): r for line in lines}


def test_pinned_edge_requirements_are_the_runtime_extra() -> None:
    pinned = {(r := Requirement(line)).name.lower().replace("_", "-"): r for line in REQUIREMENTS.read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    extra = _runtime_requirements()
    assert set(pinned) == set(extra)
    for name, requirement in pinned.items():
        (version,) = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        assert extra[name].specifier.contains(version), f"{name}=={version} is outside setup.cfg's {extra[name]}"


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("edge-venv")
    wheels = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels),
                    str(REPO_ROOT)], check=True, timeout=600)
    (wheel,) = wheels.glob("pmc2-*.whl")
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    for args in ([f"{wheel}[runtime]"], ["--no-deps", "compressai==1.2.8"]):
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
    # the cloud finds its bundle through PMC2_MODELS, the edge through --models
    environment = {**os.environ, "PMC2_EDGE_TOKEN": "venv-token", "PMC2_MODELS": str(REPO_ROOT / "onnx_models")}
    python = str(edge_venv / "bin" / "python")
    cloud = subprocess.Popen([python, "-m", "pmc2.cloud_server", "--port", str(cloud_port),
                              "--cert", str(certificates.cloud), "--threads", "1"], env=environment, cwd=tmp_path)
    started = time.monotonic()
    edge = subprocess.Popen(
        [python, "-m", "pmc2.edge_server", "--port", str(edge_port),
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
            reply = json.loads(response.read())
        assert reply["classes"] == [CLASSES[reply["labels"][0]]]
    finally:
        for process in (edge, cloud):
            process.terminate()
            process.wait(timeout=30)

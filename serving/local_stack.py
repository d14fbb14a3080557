"""Start a cloud and an edge server as real processes on localhost with TLS; stop them cleanly."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator

from pmc2.serving.dev_certs import DevCertificates, create_dev_certificates
from pmc2.serving.tls import client_context


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LocalStack:
    certificates: DevCertificates
    edge_url: str
    cloud_url: str
    token: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def client_ssl(self) -> ssl.SSLContext:
        return client_context(self.certificates.ca)

    def alive(self) -> dict[str, bool]:
        return {name: process.poll() is None for name, process in self.processes.items()}

    def peak_memory_mib(self) -> dict[str, float]:
        """Each running server's peak resident memory so far (Linux ``VmHWM``), in MiB."""
        peaks = {}
        for name, process in self.processes.items():
            status = Path(f"/proc/{process.pid}/status").read_text()
            kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            peaks[name] = kib / 1024
        return peaks


def _wait_ready(url: str, context: ssl.SSLContext, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with code {process.returncode} before becoming ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def local_stack(workdir: Path, edge_threads: int = 1, cloud_threads: int = 1, mutual_tls: bool = True,
                extra_edge_args: tuple[str, ...] = (), edge_port: int | None = None) -> Iterator[LocalStack]:
    """Cloud and edge on loopback (free ports unless ``edge_port`` is given); the edge verifies the cloud
    (and presents a client cert). The bearer token is generated afresh."""
    certificates = create_dev_certificates(workdir / "certs")
    cloud_port, edge_port = free_port(), edge_port or free_port()
    token = secrets.token_urlsafe(24)
    stack = LocalStack(certificates, f"https://localhost:{edge_port}", f"https://localhost:{cloud_port}", token)
    cloud_args = ["--port", str(cloud_port), "--cert", str(certificates.cloud), "--threads", str(cloud_threads)]
    if mutual_tls:
        cloud_args += ["--client-ca", str(certificates.ca)]
    edge_args = ["--port", str(edge_port), "--cert", str(certificates.edge), "--threads", str(edge_threads),
                 "--cloud-url", stack.cloud_url, "--cloud-ca", str(certificates.ca), *extra_edge_args]
    if mutual_tls:
        edge_args += ["--cloud-client-cert", str(certificates.edge_client)]
    environment = {**os.environ, "PMC2_EDGE_TOKEN": token}
    logs = {name: open(workdir / f"{name}.log", "w") for name in ("cloud", "edge")}
    cloud = subprocess.Popen([sys.executable, "-m", "pmc2.cloud_server", *cloud_args],
                             stdout=logs["cloud"], stderr=subprocess.STDOUT, env=environment)
    edge = subprocess.Popen([sys.executable, "-m", "pmc2.edge_server", *edge_args],
                            stdout=logs["edge"], stderr=subprocess.STDOUT, env=environment)
    stack.processes.update(cloud=cloud, edge=edge)
    try:
        context = stack.client_ssl()
        if mutual_tls:
            context.load_cert_chain(certificates.edge_client)  # readiness probe of the mTLS cloud
        _wait_ready(stack.cloud_url, context, cloud)
        _wait_ready(stack.edge_url, stack.client_ssl(), edge)
        yield stack
    finally:
        _stop(edge)
        _stop(cloud)
        for handle in logs.values():
            handle.close()

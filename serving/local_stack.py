"""Start a cloud and an edge server as real processes on localhost with TLS; stop them cleanly.

The servers never outlive the process that started them: SIGTERM and SIGHUP stop them as Ctrl-C does, and
on Linux the kernel sends each one SIGTERM if its parent dies any other way (even by SIGKILL).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

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


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _dies_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to send the child SIGTERM when the calling thread dies; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the hook only calls it
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong)
    parent, death_signal = os.getpid(), int(signal.SIGTERM)

    def hook() -> None:
        if prctl(PR_SET_PDEATHSIG, death_signal) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return hook


def _start(module: str, args: list[str], log: IO[str], environment: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT,
                            env=environment, preexec_fn=_dies_with_parent())


@contextmanager
def _stop_signals_unwind() -> Iterator[None]:
    """Inside, SIGTERM and SIGHUP raise ``SystemExit(128 + signal)`` (unwinding like Ctrl-C) where they would
    have killed the process outright; an ignored signal stays ignored (nohup). Main thread only, as Python requires."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(number: int, _frame: object) -> None:
        raise SystemExit(128 + number)

    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number, handler in previous.items():
        if handler == signal.SIG_DFL:
            signal.signal(number, leave)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def local_stack(workdir: Path, edge_threads: int = 1, cloud_threads: int = 1, mutual_tls: bool = True,
                extra_edge_args: tuple[str, ...] = (), edge_port: int | None = None) -> Iterator[LocalStack]:
    """Cloud and edge on loopback (free ports unless ``edge_port`` is given); the edge verifies the cloud
    (and presents a client cert). The bearer token is generated afresh. Enter it in the thread that holds it:
    on Linux the servers die with that thread."""
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
    with _stop_signals_unwind(), open(workdir / "cloud.log", "w") as cloud_log, open(workdir / "edge.log", "w") as edge_log:
        try:
            stack.processes["cloud"] = _start("pmc2.cloud_server", cloud_args, cloud_log, environment)
            stack.processes["edge"] = _start("pmc2.edge_server", edge_args, edge_log, environment)
            context = stack.client_ssl()
            if mutual_tls:
                context.load_cert_chain(certificates.edge_client)  # readiness probe of the mTLS cloud
            _wait_ready(stack.cloud_url, context, stack.processes["cloud"])
            _wait_ready(stack.edge_url, stack.client_ssl(), stack.processes["edge"])
            yield stack
        finally:
            for process in reversed(stack.processes.values()):  # the edge first, then the cloud
                _stop(process)

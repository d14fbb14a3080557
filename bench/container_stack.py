"""The edge and cloud images (``make images``) running as containers, set up as deploy/k8s/base says.

    phone ─HTTPS, bearer─▶ ┌ edge "pod" (one network namespace) ─┐ ─HTTPS, mutual TLS─▶ ┌ cloud ──────────────┐
                           │ data-hub stand-in ◀─kbs:///…─ edge  │   edge verifies       │ TLS files: ro mount │
                           └─────────────────────────────────────┘                       └─────────────────────┘

Each server runs with its Deployment's arguments, user, read-only root filesystem, dropped capabilities, no
privilege escalation, memory limit, /tmp and grace period, all read from deploy/k8s/base (``PodSpec``). In a CoCo
pod the edge asks the confidential data hub at 127.0.0.1:8006 for every secret; here a static file server in the
edge's network namespace answers those requests (``/cdh/resource/<repository>/<type>/<tag>``), so the edge starts
with the manifest's arguments and gets its key the way the KBS releases it. The cloud reads its TLS files from a
read-only mount, as from its Secret, and answers on a per-stack podman network under the name in the edge's
``--cloud-url``. The models are baked into the images (root's files on a read-only root). Both servers take
``--threads`` (one each by default, as ``make demo``); the pods' CPU limits are not applied.

podman runs with deploy/containers.conf (CONTAINERS_CONF). Images are found by the IDs ``make images`` keeps in
build/containers/<image>.iid.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

from pmc2.runtime.paths import REPO_ROOT
from pmc2.serving.dev_certs import DevCertificates, create_dev_certificates
from pmc2.serving.tls import client_context

IMAGE_IDS = REPO_ROOT / "build" / "containers"
MODEL_KEY = IMAGE_IDS / "model.key"  # the key of the edge-encrypted image's models (make image-edge-encrypted)
CONTAINERS_CONF = REPO_ROOT / "deploy" / "containers.conf"
MANIFESTS = REPO_ROOT / "deploy" / "k8s" / "base"
DATA_HUB = ("127.0.0.1", 8006)  # where the pod's confidential data hub listens (runtime.secrets' default)
DATA_HUB_ROOT = "/srv/data-hub"
# What the data hub releases for each of the edge's --*-uri arguments (deploy/GUIDE.md, step 3)
EDGE_SECRETS = {"--cert-uri": "edge", "--cloud-client-cert-uri": "edge_client", "--cloud-ca-uri": "ca",
                "--token-uri": "token", "--model-key-uri": "model_key"}
KNOWN_SECURITY = {"allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities"}
KNOWN_POD_SECURITY = {"runAsNonRoot", "runAsUser", "seccompProfile"}


class PodmanError(RuntimeError):
    """A podman command failed; the message holds its error output."""


def podman(*args: str, timeout: float = 300, check: bool = True, with_stderr: bool = False) -> str:
    """Run ``podman args`` with deploy/containers.conf; its standard output (and error output, interleaved, if
    ``with_stderr``: ``podman logs`` replays a container's two streams on its own two), stripped."""
    result = subprocess.run(["podman", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if with_stderr else subprocess.PIPE, text=True, timeout=timeout,
                            env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)})
    if check and result.returncode != 0:
        error = result.stdout if with_stderr else result.stderr
        raise PodmanError(f"podman {' '.join(args[:3])} …: exit {result.returncode}: {error.strip()[-2000:]}")
    return result.stdout.strip()


def podman_unavailable() -> str | None:
    """Why podman cannot run containers on this machine, or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed (make container-tools installs podman, runc, skopeo and mmdebstrap)"
    try:
        podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except (PodmanError, subprocess.TimeoutExpired) as error:
        return f"podman cannot run here: {error}"
    return None


def process_memory_mib(pid: int) -> dict[str, float]:
    """A process's resident memory now and at its peak (Linux VmRSS and VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kib = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss": kib["VmRSS"] / 1024, "peak": kib["VmHWM"] / 1024}


def image_id(name: str) -> str:
    """The ID of image ``name`` (edge, cloud, edge-encrypted) as ``make`` last built it."""
    path = IMAGE_IDS / f"{name}.iid"
    if not path.is_file():
        target = "image-edge-encrypted" if name == "edge-encrypted" else "images"
        raise FileNotFoundError(f"{path} is missing: run `make {target}` first")
    return path.read_text().strip()


def _podman_size(quantity: str) -> str:
    """A Kubernetes memory quantity (binary suffixes) as podman's --memory value."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    if not match:
        raise ValueError(f"memory quantity {quantity!r}: only Ki, Mi and Gi are translated")
    return f"{match[1]}{match[2][0].lower()}"


@dataclass(frozen=True)
class PodSpec:
    """What podman needs from one Deployment of deploy/k8s/base (its first container)."""

    args: tuple[str, ...]
    port: int
    user: int
    memory: str  # podman --memory
    read_only_root: bool
    drop_all_capabilities: bool
    no_privilege_escalation: bool
    tmp_size: str | None  # the size of the memory-backed emptyDir at /tmp, if any
    secret_mount: str | None  # where the Secret volume is mounted, if any
    grace_s: int

    @classmethod
    def of(cls, deployment: str, manifests: Path = MANIFESTS) -> "PodSpec":
        documents = [doc for path in sorted(manifests.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]
        (found,) = [doc for doc in documents if doc["kind"] == "Deployment" and doc["metadata"]["name"] == deployment]
        pod = found["spec"]["template"]["spec"]
        container = pod["containers"][0]
        security, pod_security = container.get("securityContext", {}), pod.get("securityContext", {})
        unknown = (security.keys() - KNOWN_SECURITY) | (pod_security.keys() - KNOWN_POD_SECURITY)
        if unknown or pod_security.get("seccompProfile", {"type": "RuntimeDefault"})["type"] != "RuntimeDefault":
            raise ValueError(f"{deployment}: security settings not translated to podman: {sorted(unknown) or 'seccomp'}")
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        tmp_size = secret_mount = None
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" in volume and mount["mountPath"] == "/tmp":
                tmp_size = _podman_size(volume["emptyDir"]["sizeLimit"])
            elif "secret" in volume and mount.get("readOnly"):
                secret_mount = mount["mountPath"]
            else:
                raise ValueError(f"{deployment}: volume {mount['name']} is not translated to podman")
        user = pod_security["runAsUser"]
        if pod_security.get("runAsNonRoot") and user == 0:
            raise ValueError(f"{deployment}: runAsNonRoot with runAsUser 0")
        return cls(tuple(container["args"]), container["ports"][0]["containerPort"], user,
                   _podman_size(container["resources"]["limits"]["memory"]),
                   bool(security.get("readOnlyRootFilesystem")), security.get("capabilities", {}).get("drop") == ["ALL"],
                   security.get("allowPrivilegeEscalation") is False, tmp_size, secret_mount,
                   pod.get("terminationGracePeriodSeconds", 30))

    def run_options(self) -> list[str]:
        """podman run options for the pod's user, root filesystem, capabilities, privileges, memory and /tmp."""
        options = ["--user", f"{self.user}:{self.user}", "--memory", self.memory, "--memory-swap", self.memory,
                   "--stop-timeout", str(self.grace_s)]
        if self.read_only_root:
            options += ["--read-only", "--read-only-tmpfs=false"]
        if self.drop_all_capabilities:
            options += ["--cap-drop", "ALL"]
        if self.no_privilege_escalation:
            options += ["--security-opt", "no-new-privileges"]
        if self.tmp_size:
            options += ["--tmpfs", f"/tmp:rw,size={self.tmp_size},mode=1777"]
        return options

    def argument(self, name: str) -> str | None:
        return next((arg.split("=", 1)[1] for arg in self.args if arg.split("=", 1)[0] == name), None)


@dataclass
class Started:
    """One server container started: its name and the seconds from ``podman run`` to its first ready /readyz."""

    name: str
    ready_s: float


class ContainerStack:
    """A cloud container and an edge pod (the data-hub stand-in and the edge) on their own podman network; the
    phone reaches both through ports published on 127.0.0.1. Use ``container_stack``, which removes them all."""

    def __init__(self, workdir: Path, edge_image: str = "edge", threads: int = 1, model_key: bytes | None = None) -> None:
        self.workdir = workdir
        self.name = f"pmc2-{secrets.token_hex(4)}"
        self.edge_spec, self.cloud_spec = PodSpec.of("pmc2-edge"), PodSpec.of("pmc2-cloud")
        self.edge_image, self.cloud_image = image_id(edge_image), image_id("cloud")
        self.threads = threads
        cloud_host = urlparse(self.edge_spec.argument("--cloud-url")).hostname
        self.cloud_alias = cloud_host
        self.certificates: DevCertificates = create_dev_certificates(
            workdir / "certs", ("localhost", "127.0.0.1", cloud_host))
        self.token = secrets.token_urlsafe(24)
        self.model_key = model_key if model_key is not None else os.urandom(32)
        self.containers: list[str] = []
        self.edges_started = 0
        self.edge_url = self.cloud_url = ""
        self.edge: Started | None = None
        self.cloud: Started | None = None

    # --- what the phone needs
    def client_ssl(self) -> ssl.SSLContext:
        """Verifies both servers; presents the development CA's client certificate (the cloud requires one, as in
        its manifest; the phone's direct modes borrow the edge's)."""
        return client_context(self.certificates.ca, self.certificates.edge_client)

    # --- lifecycle
    def start(self) -> None:
        podman("network", "create", "--label", f"pmc2.stack={self.name}", self.name)
        self.start_cloud()
        self.start_data_hub()
        self.start_edge()

    def _run(self, role: str, options: list[str], image: str, args: list[str]) -> str:
        name = f"{self.name}-{role}"
        podman("run", "--detach", "--name", name, "--label", f"pmc2.stack={self.name}", *options, image, *args)
        self.containers.append(name)
        return name

    def start_cloud(self) -> Started:
        spec = self.cloud_spec
        mount = self.workdir / "cloud-secret"
        files = {"cloud.pem": self.certificates.cloud, "ca.pem": self.certificates.ca}
        self._publish_files(mount, {name: path.read_bytes() for name, path in files.items()})
        used = {Path(value).name for arg in spec.args
                if "=" in arg and (value := arg.split("=", 1)[1]).startswith(f"{spec.secret_mount}/")}
        if not used <= files.keys():
            raise ValueError(f"the cloud's manifest reads {sorted(used - files.keys())} from its Secret; not provided here")
        started = time.perf_counter()
        name = self._run("cloud", [*spec.run_options(), "--network", self.name, "--network-alias", self.cloud_alias,
                                   "--publish", f"127.0.0.1::{spec.port}", "--volume", f"{mount}:{spec.secret_mount}:ro"],
                         self.cloud_image, [*spec.args, "--threads", str(self.threads)])
        self.cloud_url = f"https://localhost:{self._host_port(name, spec.port)}"
        self._wait_ready(name, self.cloud_url)
        self.cloud = Started(name, time.perf_counter() - started)
        return self.cloud

    def release_secrets(self) -> None:
        """Write what the data hub releases for each kbs:/// resource the edge's arguments name (its token, TLS files,
        the cloud's CA, ``model_key``); a running data hub serves the new files at once."""
        released = {"edge": self.certificates.edge.read_bytes(), "edge_client": self.certificates.edge_client.read_bytes(),
                    "ca": self.certificates.ca.read_bytes(), "token": self.token.encode(), "model_key": self.model_key}
        files = {}
        for option, secret in EDGE_SECRETS.items():
            uri = self.edge_spec.argument(option)
            if uri is None or not uri.startswith("kbs:///"):
                raise ValueError(f"the edge's manifest gives {option}={uri}; a kbs:/// resource was expected")
            files[f"cdh/resource/{uri.removeprefix('kbs:///')}"] = released[secret]
        self._publish_files(self.workdir / "data-hub", files)

    def start_data_hub(self) -> str:
        """The stand-in for the pod's confidential data hub, serving ``release_secrets``' files."""
        self.release_secrets()
        host, port = DATA_HUB
        # python as PID 1 ignores SIGTERM unless it handles it (the servers do); SIGINT stops http.server at once
        name = self._run("data-hub", [*self.edge_spec.run_options(), "--memory", "64m", "--memory-swap", "64m",
                                      "--stop-signal", "SIGINT",
                                      "--network", self.name, "--publish", f"127.0.0.1::{self.edge_spec.port}",
                                      "--volume", f"{self.workdir / 'data-hub'}:{DATA_HUB_ROOT}:ro", "--entrypoint", "python"],
                         self.edge_image, ["-m", "http.server", str(port), "--bind", host, "--directory", DATA_HUB_ROOT])
        self._wait_for_log(name, "Serving HTTP")
        self.edge_url = f"https://localhost:{self._host_port(name, self.edge_spec.port)}"
        return name

    def start_edge(self) -> Started:
        """The edge in the data hub's network namespace, with its manifest's arguments (and --threads)."""
        self.edges_started += 1
        started = time.perf_counter()
        name = self._run(f"edge-{self.edges_started}", [*self.edge_spec.run_options(), "--network",
                                                          f"container:{self.name}-data-hub"],
                         self.edge_image, [*self.edge_spec.args, "--threads", str(self.threads)])
        self._wait_ready(name, self.edge_url)
        self.edge = Started(name, time.perf_counter() - started)
        return self.edge

    def stop(self, name: str) -> int:
        """SIGTERM, SIGKILL after the pod's grace period; the container's exit code."""
        podman("stop", "--time", str(self.edge_spec.grace_s), name, timeout=self.edge_spec.grace_s + 60)
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", name))

    def remove(self, name: str) -> None:
        self._save_log(name)
        podman("rm", "--force", name, check=False)
        self.containers.remove(name)

    def close(self) -> None:
        for name in reversed(list(self.containers)):
            self.remove(name)
        podman("network", "rm", "--force", self.name, check=False)

    # --- what a benchmark or test reads
    def host_pid(self, name: str) -> int:
        return int(podman("inspect", "--format", "{{.State.Pid}}", name))

    def memory_mib(self, name: str) -> dict[str, float]:
        """The server process's resident memory now and at its peak, in MiB (``process_memory_mib``)."""
        return process_memory_mib(self.host_pid(name))

    def logs(self, name: str) -> str:
        return podman("logs", name, check=False, with_stderr=True)

    def exit_code(self, name: str, timeout: float = 60) -> int:
        """Waits for the container to exit; its exit code."""
        return int(podman("wait", name, timeout=timeout))

    # --- helpers
    @staticmethod
    def _publish_files(folder: Path, files: dict[str, bytes]) -> None:
        """Files the containers' user (not the owner) reads through a read-only mount; ``folder`` sits in the
        stack's private working directory, so nobody else on the host reaches it."""
        for relative, data in files.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(0o644)
        for directory in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
            directory.chmod(0o755)

    @staticmethod
    def _host_port(name: str, port: int) -> int:
        return int(podman("port", name, f"{port}/tcp").rsplit(":", 1)[1])

    def _running(self, name: str) -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", name, check=False) == "true"

    def _wait_ready(self, name: str, url: str, timeout: float = 120.0) -> None:
        context = self.client_ssl()
        deadline, checks = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            checks += 1
            if checks % 20 == 0 and not self._running(name):
                raise PodmanError(f"{name} exited before becoming ready:\n{self.logs(name)[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{name} not ready at {url} after {timeout:.0f} s:\n{self.logs(name)[-3000:]}")

    def _wait_for_log(self, name: str, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.logs(name):
                return
            if not self._running(name):
                break
            time.sleep(0.1)
        raise PodmanError(f"{name} did not log {needle!r}:\n{self.logs(name)[-3000:]}")

    def _save_log(self, name: str) -> None:
        (self.workdir / f"{name.removeprefix(self.name + '-')}.log").write_text(self.logs(name))


@contextmanager
def container_stack(workdir: Path, edge_image: str = "edge", threads: int = 1, model_key: bytes | None = None,
                    start: bool = True) -> Iterator[ContainerStack]:
    """A started stack (or, with ``start=False``, its network and nothing else running); every container and the
    network are removed on the way out, their logs kept in ``workdir``."""
    stack = ContainerStack(workdir, edge_image, threads, model_key)
    try:
        if start:
            stack.start()
        else:
            podman("network", "create", "--label", f"pmc2.stack={stack.name}", stack.name)
        yield stack
    finally:
        stack.close()

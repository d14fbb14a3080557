"""The edge and cloud images built and run with podman as deploy/k8s/base says (bench.container_stack), each from the
staging folder of its side's models (deploy/stage_models.py): small and torch-free, one request per link through
them, SIGTERM during a burst loses nothing, the edge with encrypted models starts on the key the data hub releases
and refuses a wrong one. Without podman these tests skip, naming why; `make test` installs it (make
container-tools), so in CI they run."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from pmc2.bench.container_stack import MODEL_KEY, PodmanError, PodSpec, container_stack, image_id, podman, podman_unavailable
from pmc2.edge_server.state import edge_models
from pmc2.mobile_client.modes import ImageRecord, Phone
from pmc2.mobile_client.run import runs
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.compressors import DEFAULT_COMPRESSOR, compressor_named
from pmc2.runtime.facemix import FaceMix
from pmc2.runtime.image_codecs import jpeg_bytes
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.paths import REPO_ROOT
from pmc2.runtime.protection import PROTECTORS, bundle_protectors

IMAGE_LIMIT_BYTES = 350e6
SAMPLE = load_evaluation(None)
BURST, BURST_CONCURRENCY, SIGTERM_AFTER = 384, 64, 48


def _load_stager():
    spec = importlib.util.spec_from_file_location("stage_models", REPO_ROOT / "deploy" / "stage_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STAGER = _load_stager()


def _cut_bundle(folder: Path, models: tuple[str, ...], second_compressor: bool = False) -> Path:
    """A copy of the shipped bundle in ``folder`` holding only ``models``, its own compressor's tables (no latent
    codebook) and, with ``second_compressor``, a copy of its compressor under DAPter's compressor's names."""
    source = REPO_ROOT / "onnx_models"
    manifest = json.loads((source / "manifest.json").read_text())
    own, other = compressor_named(DEFAULT_COMPRESSOR), compressor_named("dapter")
    kept = {name: manifest["models"][name] for name in models}
    files = {entry["file"]: entry["file"] for entry in (*kept.values(), manifest[own.tables])}  # staged: original
    if second_compressor:
        for ours, theirs in zip(own.models, other.models):
            kept[theirs] = {**manifest["models"][ours], "file": f"{theirs}.onnx"}
            files[kept[theirs]["file"]] = manifest["models"][ours]["file"]
        manifest[other.tables] = {**manifest[own.tables], "file": other.tables_file}
        files[other.tables_file] = manifest[own.tables]["file"]
    manifest["models"] = kept
    del manifest[FaceMix.DECOYS]
    manifest.pop(own.codebook, None)
    folder.mkdir()
    for name, original in files.items():
        shutil.copyfile(source / original, folder / name)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return folder


def test_each_side_is_staged_with_exactly_the_files_its_server_loads(tmp_path: Path) -> None:
    bundle = ModelBundle.open()
    files = {name: entry["file"] for name, entry in bundle.manifest["models"].items()}
    edge_runs = set(edge_models(bundle))
    cloud_runs = {"target", *(compressor_named(c).g_s for c in bundle.compressors),
                  *(m for p in bundle_protectors(bundle, side="cloud") for m in PROTECTORS[p].models_on("cloud"))}
    specs = [compressor_named(c) for c in bundle.compressors]
    tables = {bundle.manifest[key]["file"] for spec in specs for key in (spec.tables, spec.codebook)
              if key in bundle.manifest}
    edge = set(STAGER.stage(bundle.folder, tmp_path / "edge", "edge"))
    cloud = set(STAGER.stage(bundle.folder, tmp_path / "cloud", "cloud"))
    assert {files[m] for m in edge_runs} | {"manifest.json", *tables, bundle.manifest[FaceMix.DECOYS]["file"]} == edge
    assert {files[m] for m in cloud_runs} | {"manifest.json", *tables} == cloud
    assert not {files[m] for m in edge_runs - cloud_runs} & cloud, "the cloud image would hold an edge-only model"
    for side in ("edge", "cloud"):
        assert (tmp_path / side / "manifest.json").read_bytes() == (bundle.folder / "manifest.json").read_bytes()


def test_a_fitted_bundle_stages_its_edge_and_no_cloud_without_a_target(tmp_path: Path) -> None:
    fitted = _cut_bundle(tmp_path / "fitted", ("generator", "g_a", "g_s"))  # what python -m pmc2.fit writes
    files = {"generator.onnx", "g_a.onnx", "g_s.onnx", "entropy_bottleneck.npz", "manifest.json"}
    assert set(STAGER.stage(fitted, tmp_path / "edge", "edge")) == files
    assert set(STAGER.stage(fitted, tmp_path / "encrypted", "edge", os.urandom(32))) == \
        files - {"generator.onnx", "g_a.onnx"} | {"generator.onnx.enc", "g_a.onnx.enc"}
    with pytest.raises(STAGER.StagingError, match="the cloud needs target"):
        STAGER.stage(fitted, tmp_path / "cloud", "cloud")
    assert not (tmp_path / "cloud").exists()


def test_a_bundle_whose_manifest_names_files_outside_its_folder_is_not_staged(tmp_path: Path) -> None:
    with pytest.raises(STAGER.StagingError, match="outside its folder"):
        STAGER.stage(REPO_ROOT / "onnx_models" / "pairs" / "compact_resnet", tmp_path / "cloud", "cloud")


def test_every_compressor_is_staged_and_only_its_g_s_reaches_the_cloud(tmp_path: Path) -> None:
    bundle = _cut_bundle(tmp_path / "bundle", ("generator", "g_a", "g_s", "target"), second_compressor=True)
    shared = {"g_s.onnx", "dapter_g_s.onnx", "entropy_bottleneck.npz", "dapter_entropy_bottleneck.npz", "manifest.json"}
    assert set(STAGER.stage(bundle, tmp_path / "edge", "edge")) == shared | {"generator.onnx", "g_a.onnx", "dapter_g_a.onnx"}
    assert set(STAGER.stage(bundle, tmp_path / "cloud", "cloud")) == shared | {"target.onnx"}
    encrypted = STAGER.stage(bundle, tmp_path / "encrypted", "edge", os.urandom(32))
    assert set(encrypted) == shared | {"generator.onnx.enc", "g_a.onnx.enc", "dapter_g_a.onnx.enc"}


def test_staging_encrypts_the_edge_only_models_and_leaves_the_bundle_alone(tmp_path: Path) -> None:
    source = REPO_ROOT / "onnx_models"
    before = (source / "manifest.json").read_bytes()
    key = os.urandom(32)
    files = STAGER.stage(source, tmp_path / "staging", "edge", key)
    names = {file.removesuffix(".onnx.enc") for file in files if file.endswith(".enc")}
    assert names == {"g_a", "generator", "dapter", "facemix_edge", "facemix_head"}
    assert (source / "manifest.json").read_bytes() == before
    staged = ModelBundle.open(tmp_path / "staging", model_key=key)
    for name in names:
        assert not (tmp_path / "staging" / f"{name}.onnx").exists() and (tmp_path / "staging" / f"{name}.onnx.enc").exists()
        assert staged.model_bytes(name) == ModelBundle.open(source).model_bytes(name)
    with pytest.raises(STAGER.StagingError, match="only the edge"):
        STAGER.stage(source, tmp_path / "cloud", "cloud", key)


def test_pods_translate_to_podman_options() -> None:
    edge, cloud = PodSpec.of("pmc2-edge"), PodSpec.of("pmc2-cloud")
    for spec in (edge, cloud):
        options = spec.run_options()
        assert {"--read-only", "no-new-privileges"} <= set(options) and spec.user != 0
        assert options[options.index("--cap-drop") + 1] == "ALL" and options[options.index("--memory") + 1] == "2g"
    assert edge.tmp_size == "16m" and cloud.secret_mount == "/etc/pmc2/tls"


# ---- podman -----------------------------------------------------------------------------------------------------------

PODMAN_MISSING = podman_unavailable()


def needs_podman(test):
    """Marked ``containers``; skipped, naming why, only where podman cannot run containers."""
    return pytest.mark.containers(pytest.mark.skipif(PODMAN_MISSING is not None, reason=str(PODMAN_MISSING))(test))


@pytest.fixture(scope="module")
def images() -> None:
    """The three images, built (or found up to date) by make as a user would."""
    started = time.monotonic()
    result = subprocess.run(["make", "--no-print-directory", "images", "image-edge-encrypted"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"make images image-edge-encrypted: {time.monotonic() - started:.0f} s")


@needs_podman
@pytest.mark.parametrize("name", ["edge", "cloud", "edge-encrypted"])
def test_image_is_small_torch_free_and_non_root(images, name: str) -> None:
    identity = image_id(name)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", identity))
    assert size <= IMAGE_LIMIT_BYTES, f"{name}: {size / 1e6:.0f} MB"
    assert podman("image", "inspect", "--format", "{{.Config.User}}", identity) == "10001:10001"
    probe = ("import importlib.util, os; "
             "print(importlib.util.find_spec('torch') is None, *sorted(os.listdir('/opt/pmc2/onnx_models')))")
    torch_absent, *files = podman("run", "--rm", "--entrypoint", "python", identity, "-c", probe).split()
    assert torch_absent == "True"
    if name == "edge-encrypted":
        assert {"generator.onnx.enc", "g_a.onnx.enc"} <= set(files) and not {"generator.onnx", "g_a.onnx"} & set(files)
    else:
        assert "manifest.json" in files and not any(file.endswith(".enc") for file in files)


def _send_one_per_link(stack) -> dict[str, ImageRecord]:
    """One image through every run of ``make demo`` (each protector over each link, the phone's direct modes)."""
    bundle = ModelBundle.open()
    records = {}

    async def send_all() -> None:
        connector = aiohttp.TCPConnector(ssl=stack.client_ssl())
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            for mode, codec, protector in runs(bundle, bundle_protectors(bundle)):
                phone = Phone(stack.edge_url, stack.cloud_url, stack.token, 90, codec, bundle, protector=protector)
                record = records[f"{mode}/{protector}/{codec}"] = ImageRecord(0, int(SAMPLE.labels[0]))
                await phone.send(mode, session, SAMPLE.images[0], record)

    asyncio.run(send_all())
    return records


async def _burst(stack, edge: str) -> tuple[list[tuple[float, str, object]], float]:
    """BURST single-image requests, BURST_CONCURRENCY at a time; SIGTERM to the edge once SIGTERM_AFTER have been
    answered. Each request's (time it ended, "served" | "status" | "error", label | HTTP status | exception) and the
    time of the SIGTERM."""
    jpegs = [jpeg_bytes(SAMPLE.images[i % len(SAMPLE)], 90) for i in range(BURST)]
    outcomes: list[tuple[float, str, object]] = []
    answered, slots = asyncio.Event(), asyncio.Semaphore(BURST_CONCURRENCY)
    headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": "image/jpeg"}
    connector = aiohttp.TCPConnector(ssl=stack.client_ssl(), limit=BURST_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(body: bytes) -> None:
            async with slots:
                try:
                    async with session.post(f"{stack.edge_url}/v1/recognize", data=body, headers=headers) as response:
                        reply = await response.json(content_type=None)
                        outcome = ("served", reply["labels"][0]) if response.status == 200 else ("status", response.status)
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    outcome = ("error", error)
                outcomes.append((time.monotonic(), *outcome))
                if len(outcomes) >= SIGTERM_AFTER:
                    answered.set()

        async def terminate() -> float:
            await answered.wait()
            at = time.monotonic()
            await asyncio.to_thread(podman, "kill", "--signal", "TERM", edge)
            return at

        *_, sigterm_at = await asyncio.gather(*(one(body) for body in jpegs), terminate())
    return outcomes, sigterm_at


def _cloud_images(stack) -> float:
    """The cloud's count of images classified (its Prometheus counter)."""
    with urllib.request.urlopen(f"{stack.cloud_url}/metrics", context=stack.client_ssl(), timeout=10) as response:
        text = response.read().decode()
    return float(re.search(r"^pmc2_cloud_images_total (\S+)$", text, re.M)[1])


@needs_podman
def test_one_request_per_link_then_sigterm_during_a_burst_loses_nothing(images, tmp_path: Path) -> None:
    with container_stack(tmp_path) as stack:
        edge = stack.edge.name
        for name in (edge, stack.cloud.name):  # the pods' settings, as the running containers have them
            read_only, user, memory = podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} "
                                             "{{.HostConfig.Memory}}", name).split()
            assert (read_only, user, int(memory)) == ("true", "10001:10001", 2 * 2**30)
            status = Path(f"/proc/{stack.host_pid(name)}/status").read_text()
            assert re.search(r"^CapEff:\s+0+$", status, re.M) and re.search(r"^NoNewPrivs:\s+1$", status, re.M)
        # the models: root's files (EACCES to the server's user) on a read-only mount
        probe = ("import errno, os\ntry:\n    open('/opt/pmc2/onnx_models/g_s.onnx', 'ab')\n"
                 "except OSError as error:\n    print(os.getuid(), errno.errorcode[error.errno], "
                 "bool(os.statvfs('/opt/pmc2/onnx_models').f_flag & os.ST_RDONLY))")
        assert podman("exec", edge, "python", "-c", probe).split() == ["10001", "EACCES", "True"]

        records = _send_one_per_link(stack)
        assert len(records) == len(runs(ModelBundle.open(), bundle_protectors(ModelBundle.open())))
        for run, record in records.items():
            assert record.error is None, f"{run}: {record.error}"
            assert record.label in range(10) and record.s2_bytes > 0, run

        before = _cloud_images(stack)
        outcomes, sigterm_at = asyncio.run(_burst(stack, edge))
        exit_code = stack.exit_code(edge, timeout=stack.edge_spec.grace_s + 30)
        kinds = [kind for _, kind, _ in outcomes]
        served_after_sigterm = sum(at > sigterm_at and kind == "served" for at, kind, _ in outcomes)
        print(f"burst of {BURST}: {kinds.count('served')} served ({served_after_sigterm} answered after SIGTERM), "
              f"{kinds.count('error')} refused; edge exit code {exit_code}")
        assert len(outcomes) == BURST
        # a request is served, or refused at the connection (the edge had stopped accepting), never failed midway
        assert all(kind == "served" and value in range(10) or kind == "error" and isinstance(value, aiohttp.ClientConnectionError)
                   and not isinstance(value, aiohttp.ServerTimeoutError) for _, kind, value in outcomes), \
            [(kind, value) for _, kind, value in outcomes if kind != "served"][:5]
        assert served_after_sigterm > 0, "no request was in flight at SIGTERM"
        assert exit_code == 0, stack.logs(edge)[-2000:]
        # nothing lost: every image the edge forwarded to the cloud was answered to the phone
        assert _cloud_images(stack) - before == kinds.count("served")


@needs_podman
def test_encrypted_edge_starts_on_the_released_key_and_refuses_a_wrong_one(images, tmp_path: Path) -> None:
    with container_stack(tmp_path, edge_image="edge-encrypted", model_key=MODEL_KEY.read_bytes()) as stack:
        records = _send_one_per_link(stack)
        assert all(record.error is None for record in records.values()), records
        assert stack.stop(stack.edge.name) == 0
        stack.model_key = os.urandom(32)
        stack.release_secrets()  # the data hub now releases a wrong key
        with pytest.raises(PodmanError, match="refusing to start") as refused:
            stack.start_edge()
        assert "wrong key" in str(refused.value)

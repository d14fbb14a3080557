"""``python -m pmc2.fit`` on a tiny budget: black-box through a real cloud on loopback (mutual TLS), white-box from
an ONNX file; what each run asked the target, what its bundle holds, and that the bundle serves."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import aiohttp
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from pmc2.cloud_server.app import create_app as create_cloud_app
from pmc2.edge_server.app import create_app as create_edge_app
from pmc2.cloud_server.config import CloudConfig
from pmc2.evaluation.fitted import committed_fit_records, cpu_hours, fitted_row, fitted_section
from pmc2.fit.__main__ import main as fit_main, open_record, parse_args, settings_from
from pmc2.fit.access import BLACK_BOX, WHITE_BOX
from pmc2.fit.cloud_models import cloud_models
from pmc2.fit.fitted_bundle import edge_of, through_link
from pmc2.fit.attempts import HEARTBEAT, KILLED, file_killed_attempt
from pmc2.fit.input_spaces import INPUT_SPACES
from pmc2.fit.onnx_labeler import OnnxLabeler
from pmc2.runtime.image_decoding import decode_image
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.normalization import to_uint8_nhwc
from pmc2.runtime.paths import ONNX_MODELS
from pmc2.runtime.sessions import SessionSettings
from pmc2.serving.dev_certs import create_dev_certificates
from pmc2.serving.tls import client_context
from tests.servers import serve_tls
from tests.test_fit_cloud_access import served
from tests.test_servers import SAMPLE, edge_config, jpeg, post_edge

SESSIONS = SessionSettings(intra_op_threads=1)
TARGET_ONNX = ONNX_MODELS / "target.onnx"
PUBLIC, EVALUATED = 48, 24
TINY = ["--limit", str(PUBLIC), "--edge-classifier-epochs", "1", "--compressor-start-epochs", "1", "--epochs", "1",
        "--batch-size", "16",
        "--codebook-images", str(PUBLIC), "--shaping-rounds", "1", "--steering-rounds", "1", "--steering-attack-steps", "1",
        "--evaluation-limit", str(EVALUATED),
        "--attacker-images", "32", "--attack-epochs", "1"]  # no --threads: it would set torch's for the whole session


def tensors_of(models: list[Path]) -> list[np.ndarray]:
    """Every initializer (as float32) of ``models`` with at least 16 values not all equal: weights, not shapes,
    scalars or constants (a frozen BatchNorm scale of ones is in every network of that shape)."""
    arrays = [numpy_helper.to_array(tensor).astype(np.float32) for path in models
              for tensor in onnx.load(path).graph.initializer]
    return [array for array in arrays if array.size >= 16 and np.ptp(array) > 0]


def shared_tensors(target: Path, folder: Path) -> int:
    """How many of ``target``'s tensors appear, value for value, among the initializers of the bundle in ``folder``."""
    ours = {(array.shape, array.tobytes()) for array in tensors_of(sorted(folder.glob("*.onnx")))}
    return sum((array.shape, array.tobytes()) in ours for array in tensors_of([target]))


def test_the_weight_check_finds_a_target_a_bundle_does_hold() -> None:
    assert shared_tensors(TARGET_ONNX, ONNX_MODELS) == len(tensors_of([TARGET_ONNX])) > 10


def run_record(out: Path) -> dict:
    return json.loads((out / "fit.json").read_text())


def assert_serves_and_describes(out: Path, record: dict) -> None:
    bundle = ModelBundle.open(out / "bundle")
    bundle.verify_all()
    assert set(bundle.manifest["models"]) == {"generator", "g_a", "g_s"} and bundle.link_image == "decoded"
    assert list(record["stages"]) == ["answers", "edge_classifier", "compressor_start", "end_to_end", "codebook",
                                      "bundle", "evaluation", "attacks"]
    row = record["stages"]["evaluation"]
    # bytes only > 0: one epoch on 48 images leaves the compressor near its rate-distortion start, whose code can
    # outweigh the PNG of a near-flat decoded image; the bytes goal is the full fit's (reports/fit)
    assert row["images"] == EVALUATED and row["neural"]["bytes_mean"] > 0 and row["png"]["bytes_mean"] > 0
    assert row["neural"]["distinct_decoded_images"] <= 10  # the codebook: one decoded image per class at most
    assert "| target | access |" in (out / "fit.md").read_text()
    assert "| " + " | ".join(fitted_row(record)) + " |" in fitted_section(committed_fit_records(out.parent))
    # nothing starts from the target: the edge classifier from scratch, the generator from it, the compressor afresh
    # (rate and distortion on the public images), then both end to end
    edge_classifier = json.loads((out / "edge_classifier" / "fastnet.record.json").read_text())
    compressor_start = json.loads((out / "compressor_start" / "compressor.record.json").read_text())
    assert edge_classifier["config"]["init"] is None and compressor_start["config"]["init"] is None
    generator = json.loads((out / "end_to_end" / "generator.record.json").read_text())
    assert generator["config"]["init"]["encoder"] == str(out / "edge_classifier" / "fastnet.pt")
    assert generator["config"]["init"]["compressor"]["file"] == str(out / "compressor_start" / "compressor.pt")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory):
    return create_dev_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def black_box_fit(certificates, tiny_cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A tiny black-box fit through a real cloud on loopback: its folder, and how many images the cloud classified."""
    out = tmp_path_factory.mktemp("black_box") / "fit"

    async def fit_through_the_cloud() -> float:
        app = create_cloud_app(CloudConfig(sessions=SESSIONS))
        async with serve_tls(app, certificates.cloud, client_ca=certificates.ca) as cloud:
            await asyncio.to_thread(fit_main, [
                "--target", f"{cloud.url}/v1/classify", "--access", BLACK_BOX, "--out", str(out), "--data",
                str(tiny_cifar), "--ca", str(certificates.ca), "--client-cert", str(certificates.fitter), *TINY])
        return served(app, "images")

    return out, asyncio.run(fit_through_the_cloud())


def test_a_black_box_fit_through_the_real_cloud_counts_every_query_and_ships_none_of_the_target(
        black_box_fit: tuple[Path, float]) -> None:
    out, classified = black_box_fit
    record = run_record(out)
    assert record["access"] == BLACK_BOX and record["reached_as"].startswith("black-box through the cloud at")
    stages = record["stages"]
    asked = {name: stage["queries"]["images_queried"] for name, stage in stages.items()}
    assert sum(asked.values()) == record["queries_total"]["images_queried"] == classified  # what the cloud classified
    answers = stages["answers"]["queries"]
    assert answers["images_queried"] + answers["images_from_cache"] == 2 * PUBLIC  # training and validation images
    codebook = stages["codebook"]
    checked = codebook["queries"]["images_queried"] + codebook["queries"]["images_from_cache"]
    assert checked >= 10 * (1 + codebook["steering_rounds"])  # the ten code images, after shaping and each steering
    assert asked["codebook"] > 10 if codebook["steering_rounds"] else 0 < asked["codebook"] <= 10  # the attack asks
    assert asked["evaluation"] <= EVALUATED + 10  # the phone's JPEGs, then the few images the cloud decodes
    assert asked["attacks"] == 0  # the attacker's cloud labels: images already answered
    assert asked["edge_classifier"] == asked["compressor_start"] == asked["end_to_end"] == asked["bundle"] == 0
    assert shared_tensors(TARGET_ONNX, out / "bundle") == 0
    assert_serves_and_describes(out, record)


async def test_the_fitted_bundle_serves_through_real_servers_with_the_clouds_own_target(
        certificates, black_box_fit: tuple[Path, float], tmp_path: Path) -> None:
    """The edge serves the fitted bundle; the cloud, its g_s beside its target (python -m pmc2.fit.cloud_models):
    each answer is the target's label of what the edge's own decode shows."""
    bundle = black_box_fit[0] / "bundle"
    cloud_models(bundle, TARGET_ONNX, tmp_path / "cloud")
    pixels = SAMPLE.images[:6]
    received = np.stack([decode_image(jpeg(image)) for image in pixels])
    decoded, _ = through_link(edge_of(bundle), received, "neural")
    expected = OnnxLabeler(TARGET_ONNX, INPUT_SPACES["normalized"], SESSIONS).labels(to_uint8_nhwc(decoded.numpy()))
    async with serve_tls(create_cloud_app(CloudConfig(models=tmp_path / "cloud", sessions=SESSIONS)), certificates.cloud,
                         client_ca=certificates.ca) as cloud:
        async with serve_tls(create_edge_app(edge_config(certificates, cloud.url, models=bundle)), certificates.edge) as edge:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(certificates.ca))) as client:
                for image, label in zip(pixels, expected):
                    status, reply, _ = await post_edge(client, edge, jpeg(image), codec="neural")
                    assert status == 200, reply
                    assert reply["labels"] == [int(label)]


def test_a_white_box_fit_from_an_onnx_file_asks_nothing(tiny_cifar: Path, tmp_path: Path) -> None:
    out = tmp_path / "fit"
    fit_main(["--target", str(TARGET_ONNX), "--access", WHITE_BOX, "--out", str(out), "--data", str(tiny_cifar), *TINY])
    record = run_record(out)
    assert record["access"] == WHITE_BOX and "onnx2torch" in record["stages"]["end_to_end"]["teacher"]
    assert_serves_and_describes(out, record)


def test_a_resumed_run_pays_for_no_image_twice(tmp_path: Path) -> None:
    """The answers and counts a run keeps (fit.stages.FitRun.keep_answers) carry over to the resumed run."""
    first = OnnxLabeler(TARGET_ONNX, INPUT_SPACES["normalized"], SESSIONS)
    labels = first.labels(SAMPLE.images[:12])
    first.save_answers(tmp_path / "answers.npz")
    resumed = OnnxLabeler(TARGET_ONNX, INPUT_SPACES["normalized"], SESSIONS)
    resumed.load_answers(tmp_path / "answers.npz")
    assert (resumed.labels(SAMPLE.images[:16])[:12] == labels).all()
    assert (resumed.count.images_queried, resumed.count.images_from_cache, resumed.count.requests) == (16, 12, 2)


def test_a_fit_refuses_to_overwrite_or_to_resume_another_run(tiny_cifar: Path, tmp_path: Path) -> None:
    (tmp_path / "fit.json").write_text(json.dumps({"target": "other", "access": WHITE_BOX, "settings": {}}))
    arguments = ["--target", "fastnet", "--out", str(tmp_path), "--data", str(tiny_cifar), *TINY]
    with pytest.raises(SystemExit, match="give --resume"):
        fit_main(arguments)
    with pytest.raises(SystemExit, match="records another run"):
        fit_main([*arguments, "--resume"])
    with pytest.raises(SystemExit, match="--target: .*is none of"):
        fit_main(["--target", "no-such-model", "--out", str(tmp_path / "new"), *TINY])
    with pytest.raises(SystemExit, match="is the target itself"):
        fit_main(["--target", "compact_resnet", "--out", str(tmp_path / "new"), *TINY])


def test_a_resumed_record_takes_the_settings_of_stages_not_yet_begun_and_refuses_other_changes(
        tiny_cifar: Path, tmp_path: Path) -> None:
    args = parse_args(["--target", "fastnet", "--out", str(tmp_path), "--data", str(tiny_cifar), "--resume", *TINY])
    settings = settings_from(args)
    current = json.loads(json.dumps(asdict(settings), default=str))
    earlier = {key: value for key, value in current.items() if key != "compressor_start"}

    def resumed(settings_recorded: dict, stages_begun: list[str]) -> dict:
        (tmp_path / "fit.json").write_text(json.dumps({
            "target": "fastnet", "access": WHITE_BOX, "settings": settings_recorded, "resumed_by": ["python -m pmc2.fit"],
            "stages": {name: {"cpu_seconds": 1.0} for name in stages_begun}}))
        return open_record(args, "python -m pmc2.fit --resume", settings, "fastnet", WHITE_BOX)

    record = resumed(earlier, ["answers", "edge_classifier"])
    assert record["settings"] == current
    assert record["resumed_by"][0] == {"command": "python -m pmc2.fit"}  # an older record's entry, kept
    assert record["resumed_by"][-1]["settings_added"] == ["compressor_start"] and record["resumed_by"][-1]["git_commit"]
    assert "settings_added" not in resumed(current, ["answers"])["resumed_by"][-1]
    with pytest.raises(SystemExit, match=r"records another run \(compressor_start differ\)"):
        resumed(earlier, ["answers", "edge_classifier", "end_to_end"])  # a stage after the added one has begun
    steering = {**current, "codebook": {**current["codebook"], "depth": current["codebook"]["depth"] / 5}}
    record = resumed(steering, ["answers", "edge_classifier", "compressor_start"])
    assert record["settings"] == current and record["resumed_by"][-1]["settings_changed"] == ["codebook"]
    with pytest.raises(SystemExit, match=r"records another run \(codebook.depth differ\)"):
        resumed(steering, ["answers", "edge_classifier", "compressor_start", "end_to_end", "codebook"])
    changed = {**current, "codebook_images": current["codebook_images"] + 1,
               "end_to_end": {**current["end_to_end"], "bf16": not current["end_to_end"]["bf16"]}}
    with pytest.raises(SystemExit, match=r"records another run \(codebook_images, end_to_end.bf16 differ \(.*--bf16"):
        resumed(changed, ["answers", "edge_classifier", "compressor_start", "end_to_end"])


def test_a_stage_whose_folder_exists_has_begun_and_a_redo_moves_the_folders_of_the_stages_it_runs_again(
        tiny_cifar: Path, tmp_path: Path) -> None:
    arguments = ["--target", "fastnet", "--out", str(tmp_path), "--data", str(tiny_cifar), "--resume", *TINY]
    args = parse_args(arguments)
    settings = settings_from(args)
    current = json.loads(json.dumps(asdict(settings), default=str))
    done = ["answers", "edge_classifier", "compressor_start"]
    (tmp_path / "fit.json").write_text(json.dumps({
        "target": "fastnet", "access": WHITE_BOX, "resumed_by": [],
        "settings": {**current, "end_to_end": {**current["end_to_end"], "lr": 1.0}},
        "stages": {name: {"cpu_seconds": 1.0} for name in done}}))
    for stage in ("compressor_start", "end_to_end"):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "state.pt").write_bytes(b"a state a killed attempt left")
    with pytest.raises(SystemExit, match=r"records another run \(end_to_end.lr differ\)"):
        open_record(args, "python -m pmc2.fit --resume", settings, "fastnet", WHITE_BOX)  # its folder says it began

    record = open_record(parse_args([*arguments, "--redo-from", "compressor_start"]), "python -m pmc2.fit --resume",
                         settings, "fastnet", WHITE_BOX)
    assert record["settings"] == current and list(record["stages"]) == done[:2]
    assert [(entry["stage"], entry["folder"]) for entry in record["superseded_folders"]] == [
        ("compressor_start", "superseded/compressor_start.1"), ("end_to_end", "superseded/end_to_end.1")]
    assert not (tmp_path / "end_to_end").exists() and (tmp_path / "superseded" / "end_to_end.1" / "state.pt").exists()


def stopped_in_edge_classifier(tiny_cifar: Path, tmp_path: Path, stop: signal.Signals) -> tuple[Path, list[str], int]:
    """A tiny white-box fit sent ``stop`` a second into its edge classifier's training: its folder, its arguments
    and its exit code."""
    out, log = tmp_path / "fit", tmp_path / "fit.log"
    long_stage = ["--edge-classifier-epochs", "1000"]  # minutes on 48 images: the signal lands well inside it
    arguments = ["--target", "fastnet", "--out", str(out), "--data", str(tiny_cifar), *TINY, *long_stage,
                 "--heartbeat-seconds", "0.2"]
    command = [sys.executable, "-m", "pmc2.fit", *arguments, "--threads", "1"]
    with log.open("w") as stderr:
        fitting = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 300
        while "fit: edge_classifier" not in log.read_text():
            assert fitting.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(1.0)  # a second of training, so CPU time the attempt must keep
        fitting.send_signal(stop)
        return out, arguments, fitting.wait(timeout=120)
    finally:
        fitting.kill()


def test_a_fit_ended_by_sigterm_keeps_the_attempts_time_and_a_record_without_cpu_times_is_not_resumed(
        tiny_cifar: Path, tmp_path: Path) -> None:
    out, arguments, exit_code = stopped_in_edge_classifier(tiny_cifar, tmp_path, signal.SIGTERM)
    assert exit_code == 128 + signal.SIGTERM
    assert not (out / HEARTBEAT).exists()  # the record holds the attempt
    record = run_record(out)
    [interrupted] = record["interrupted"]
    assert interrupted["stage"] == "edge_classifier" not in record["stages"] and interrupted["ended_by"] == "SystemExit"
    assert interrupted["cpu_seconds"] > 0
    spent = sum(stage["cpu_seconds"] for stage in record["stages"].values()) + interrupted["cpu_seconds"]
    assert cpu_hours(record) == pytest.approx(spent / 3600)
    del record["stages"]["answers"]["cpu_seconds"]  # as a record written before fits kept CPU times
    (out / "fit.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="before fits recorded their CPU time"):
        fit_main([*arguments, "--resume"])


def test_a_fit_killed_outright_has_its_attempt_filed_from_its_heartbeat_when_resumed(tiny_cifar: Path,
                                                                                   tmp_path: Path) -> None:
    out, arguments, exit_code = stopped_in_edge_classifier(tiny_cifar, tmp_path, signal.SIGKILL)
    assert exit_code == -signal.SIGKILL
    beat = json.loads((out / HEARTBEAT).read_text())
    assert beat["stage"] == "edge_classifier" and beat["cpu_seconds"] > 0
    args = parse_args([*arguments, "--resume"])
    record = open_record(args, "python -m pmc2.fit --resume", settings_from(args), "fastnet", WHITE_BOX)
    assert record["interrupted"] == [{**beat, "ended_by": KILLED}]
    file_killed_attempt(out, record)  # as if killed again after writing this record, before removing the heartbeat
    assert len(record["interrupted"]) == 1
    assert cpu_hours(record) >= beat["cpu_seconds"] / 3600


def test_a_fit_row_says_how_many_queries_went_to_stages_redone() -> None:
    record = {"target": "t", "access": BLACK_BOX, "queries_total": {"images_queried": 1200}, "stages": {},
              "superseded": [{"stage": "codebook", "queries": {"images_queried": 200}, "cpu_seconds": 3600.0},
                             {"stage": "bundle", "ended_by": "SystemExit", "cpu_seconds": 1800.0}]}
    assert fitted_row(record)[2] == "1,200 (200 in stages redone)" and fitted_row(record)[-1] == "1.50"
    assert fitted_row({**record, "superseded": []})[2] == "1,200"

"""Edge and cloud servers on loopback with real TLS: modes, codecs, security and every error case."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import ssl
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from pmc2.cloud_server.app import create_app as create_cloud_app
from pmc2.cloud_server.config import CloudConfig
from pmc2.serving.local_stack import free_port
from pmc2.edge_server.app import create_app as create_edge_app, open_edge_bundle
from pmc2.edge_server.config import EdgeConfig
from pmc2.training.pairs import PAIRS
from pmc2.mobile_client.modes import Phone
from pmc2.mobile_client.run import format_accuracy_by_class, run_mode, summarize
from pmc2.runtime.cifar10 import CLASSES, load_evaluation
from pmc2.runtime.compressors import DEFAULT_COMPRESSOR, TABLES_HEADER
from pmc2.runtime.image_decoding import decode_image
from pmc2.runtime.link_codecs import CodecContext, codec_named, codecs_for
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.pipeline import classify, perturb, preprocess
from pmc2.runtime.protection import Protector, UnknownProtector, bundle_protectors
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
from pmc2.serving.dev_certs import create_dev_certificates
from pmc2.serving.http_common import DRAINING
from pmc2.serving.tls import client_context
from tests.servers import recording_middleware, serve_tls

TOKEN = "test-token-123"
SESSIONS = SessionSettings(intra_op_threads=1)
SAMPLE = load_evaluation(None).subset(slice(0, 16))


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory):
    return create_dev_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def cloud(certificates):
    bodies: list[bytes] = []
    app = create_cloud_app()
    app.middlewares.append(recording_middleware(bodies))
    async with serve_tls(app, certificates.cloud, client_ca=certificates.ca) as server:
        server.bodies = bodies
        yield server


def edge_config(certificates, cloud_url: str, **overrides) -> EdgeConfig:
    config = EdgeConfig(cloud_url=cloud_url, cloud_ca=certificates.ca, cloud_client_cert=certificates.edge_client,
                        token=TOKEN, sessions=SESSIONS, max_wait_ms=5.0, cloud_timeout_s=2.0)
    return replace(config, **overrides)


@pytest.fixture
async def edge(certificates, cloud):
    app = create_edge_app(edge_config(certificates, cloud.url))
    async with serve_tls(app, certificates.edge) as server:
        server.app = app
        yield server


@pytest.fixture
async def client(certificates):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(certificates.ca))) as session:
        yield session


async def post_edge(client, edge, body: bytes, content_type: str = "image/jpeg", codec: str | None = None,
                    token: str | None = TOKEN, protector: str | None = None) -> tuple[int, dict, aiohttp.ClientResponse]:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})}
    query = {key: value for key, value in (("codec", codec), ("protector", protector)) if value}
    async with client.post(f"{edge.url}/v1/recognize", params=query, data=body, headers=headers) as response:
        return response.status, await response.json(), response


def runtime_labels(bundle: ModelBundle, pixels: np.ndarray, codec: str, protector: str = "perturbation") -> np.ndarray:
    """The labels the runtime computes in-process for phone JPEGs of ``pixels`` protected by ``protector`` and
    sent over ``codec``."""
    protector = Protector(bundle, name=protector)
    perturbed = protector.perturb(np.stack([decode_image(jpeg(p)) for p in pixels]))
    reference = codec_named(codec).build(CodecContext(bundle, g_a=bundle.session("g_a"), g_s=bundle.session("g_s")))
    carried = protector.pixels_for_links(perturbed) if reference.carries_pixels else perturbed
    return classify(bundle.session("target"), reference.decode(reference.encode(carried), len(carried)))


@pytest.mark.parametrize("protector", bundle_protectors(ModelBundle.open(), "image"))
@pytest.mark.parametrize("codec", codecs_for(ModelBundle.open(), DEFAULT_COMPRESSOR))
async def test_edge_returns_the_labels_the_runtime_computes(client, edge, codec: str, protector: str) -> None:
    pixels = SAMPLE.images[:4]
    expected = runtime_labels(ModelBundle.open(), pixels, codec, protector)
    for index, image in enumerate(pixels):
        status, reply, response = await post_edge(client, edge, jpeg(image), codec=codec, protector=protector)
        assert status == 200, reply
        assert reply["labels"] == [int(expected[index])] and reply["codec"] == codec
        assert reply["protector"] == protector
        assert reply["s2_bytes"][0] > 0
        assert "generation;dur=" in response.headers["Server-Timing"]


async def test_second_pair_is_served_from_its_own_bundle(certificates, client) -> None:
    bundle_folder = PAIRS["compact_resnet"].onnx_models
    bundle, pixels = ModelBundle.open(bundle_folder), SAMPLE.images[:6]
    cloud_app = create_cloud_app(CloudConfig(models=bundle_folder, sessions=SESSIONS))
    async with serve_tls(cloud_app, certificates.cloud, client_ca=certificates.ca) as cloud:
        edge_app = create_edge_app(edge_config(certificates, cloud.url, models=bundle_folder))
        async with serve_tls(edge_app, certificates.edge) as edge:
            for protector, codec in (("perturbation", "neural"), ("dapter", "png")):  # DAPter trained for this target
                expected = runtime_labels(bundle, pixels, codec, protector)
                for index, image in enumerate(pixels):
                    status, reply, _ = await post_edge(client, edge, jpeg(image), codec=codec, protector=protector)
                    assert status == 200, reply
                    assert reply["labels"] == [int(expected[index])]
            # FaceMix's split model is exported with the default pair only
            status, reply, _ = await post_edge(client, edge, jpeg(pixels[0]), protector="facemix")
            assert status == 400 and "no model for protector 'facemix'" in reply["error"], reply


def test_an_edge_refuses_to_start_with_a_protector_its_bundle_lacks(certificates) -> None:
    config = edge_config(certificates, "https://localhost:1", models=PAIRS["compact_resnet"].onnx_models,
                         protector="facemix")
    with pytest.raises(UnknownProtector, match="has no model"):
        open_edge_bundle(config)


async def test_one_neural_stream_per_micro_batch(client, edge, cloud) -> None:
    bundle = ModelBundle.open()
    pixels = SAMPLE.images[:16]
    perturbed = perturb(bundle.session("generator"), preprocess(np.stack([decode_image(jpeg(p)) for p in pixels])))
    expected = runtime_labels(bundle, pixels, "neural")
    per_image_bytes = [len(stream) for stream in codec_named("neural").build(
        CodecContext(bundle, g_a=bundle.session("g_a"))).encode(perturbed)]
    replies = await asyncio.gather(*(post_edge(client, edge, jpeg(p), codec="neural-batch") for p in pixels))
    assert all(status == 200 for status, _, _ in replies)
    assert [reply["labels"][0] for _, reply, _ in replies] == expected.tolist()
    shared = [reply for _, reply, _ in replies if reply["batch_size"] > 1]
    assert shared, "no two requests shared a micro-batch"
    assert np.mean([reply["s2_bytes"][0] for reply in shared]) < np.mean(per_image_bytes)
    assert any(EncodedBatch.from_bytes(body).codec == "neural-batch" for body in cloud.bodies)


async def test_batch_from_the_client_in_one_request(client, edge) -> None:
    body = EncodedBatch("jpeg", [jpeg(p) for p in SAMPLE.images[:8]]).to_bytes()
    status, reply, _ = await post_edge(client, edge, body, content_type=CONTENT_TYPE)
    assert status == 200 and len(reply["labels"]) == 8 and reply["batch_size"] >= 8


async def test_original_pixels_never_reach_the_cloud(client, edge, cloud) -> None:
    originals = [jpeg(p) for p in SAMPLE.images[:6]]
    for codec in ("neural", "png", "jpeg"):
        for payload in originals:
            status, _, _ = await post_edge(client, edge, payload, codec=codec)
            assert status == 200
    assert len(cloud.bodies) >= 3
    decoded_originals = [decode_image(p) for p in originals]
    for body in cloud.bodies:
        for payload, pixels in zip(originals, decoded_originals, strict=True):
            assert payload not in body and pixels.tobytes() not in body
        batch = EncodedBatch.from_bytes(body)
        if batch.codec == "png":
            sent = decode_image(batch.payloads[0])
            closest = min(np.abs(sent.astype(int) - o.astype(int)).mean() for o in decoded_originals)
            assert closest > 20, "a PNG sent to the cloud looks like an original image"


async def test_micro_batching_serves_concurrent_requests(client, edge) -> None:
    payloads = [jpeg(p) for p in SAMPLE.images]
    replies = await asyncio.gather(*(post_edge(client, edge, p) for p in payloads))
    assert all(status == 200 for status, _, _ in replies)
    assert max(reply["batch_size"] for _, reply, _ in replies) > 1


@pytest.mark.parametrize("protector", bundle_protectors(ModelBundle.open(), "image"))
async def test_mobile_client_modes(certificates, edge, cloud, protector: str) -> None:
    bundle = ModelBundle.open()
    phone = Phone(edge.url, cloud.url, TOKEN, 90, "neural", bundle, protector=protector)
    context = client_context(certificates.ca, certificates.edge_client, certificates.edge_client)
    rows = {}
    for mode in ("pmc2", "pp-baseline", "unprotected"):
        records = await run_mode(phone, mode, SAMPLE, context, concurrency=4, progress=False)
        summary = rows[mode] = summarize(records)
        assert summary["errors"] == 0, summary["first_error"]
        assert all(r.label is not None and r.s2_bytes for r in records)
        assert all(r.class_name == CLASSES[r.label] for r in records)
        assert set(summary["accuracy_by_class"]) == {CLASSES[label] for label in SAMPLE.labels}
        assert summary["latency_p50_ms"] > 0 and "recognition" in summary["stage_medians_ms"]
    assert summarize(records)["s1_bytes_mean"] is None  # only pmc2 has a mobile→edge JPEG
    table = format_accuracy_by_class(rows).splitlines()
    assert table[1].split() == ["run", *CLASSES] and [line.split()[0] for line in table[2:]] == list(rows)
    assert {len(line) for line in table[1:]} == {len(table[1])}  # every cell under its class


def _first_tls_response(url: str, context: ssl.SSLContext) -> bytes:
    """Open a TLS connection, send one plain GET /healthz and return what comes back first."""
    host, port = url.removeprefix("https://").split(":")
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return tls.recv(64)


async def test_cloud_requires_a_client_certificate(certificates, cloud) -> None:
    """TLS 1.2, where the server checks the client's certificate inside the handshake: without one the
    handshake itself fails (an SSL error, not an HTTP answer or a refused connection); with one, the
    same client gets its 200."""
    without = client_context(certificates.ca)
    with_certificate = client_context(certificates.ca, certificates.edge_client, certificates.edge_client)
    for context in (without, with_certificate):
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(_first_tls_response, cloud.url, without)
    assert (await asyncio.to_thread(_first_tls_response, cloud.url, with_certificate)).startswith(b"HTTP/1.1 200")


async def test_edge_refuses_a_cloud_it_cannot_verify(certificates, cloud, client, tmp_path: Path) -> None:
    stranger = create_dev_certificates(tmp_path / "other")
    config = edge_config(certificates, cloud.url, cloud_ca=stranger.ca, cloud_connect_retries=0)
    async with serve_tls(create_edge_app(config), certificates.edge) as edge:
        status, reply, _ = await post_edge(client, edge, jpeg(SAMPLE.images[0]))
    assert status == 502 and "cloud unreachable" in reply["error"] and "CERTIFICATE_VERIFY_FAILED" in reply["error"]


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_bearer_token_is_required(client, edge, token) -> None:
    status, reply, _ = await post_edge(client, edge, jpeg(SAMPLE.images[0]), token=token)
    assert status == 401 and "token" in reply["error"]


def test_an_edge_without_a_token_needs_the_loud_development_flag(certificates) -> None:
    with pytest.raises(ValueError, match="insecure-dev-no-auth"):
        edge_config(certificates, "https://localhost:1", token=None)
    assert edge_config(certificates, "https://localhost:1", token=None, allow_unauthenticated=True).token is None


def test_the_edge_command_refuses_to_start_without_a_token(certificates, tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "PMC2_EDGE_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "pmc2.edge_server", "--cert", str(certificates.edge)],
                            capture_output=True, text=True, env=environment, timeout=120, cwd=tmp_path)
    assert result.returncode != 0 and "no bearer token" in result.stderr and "--insecure-dev-no-auth" in result.stderr


def _rotated_jpeg(pixels: np.ndarray) -> bytes:
    """A phone photo stored sideways: pixels turned 90° clockwise, EXIF orientation 8 (rotate back on display)."""
    sideways = Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8  # Orientation: the viewer turns the image 90° anticlockwise
    buffer = io.BytesIO()
    sideways.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_a_rotated_phone_photo_decodes_upright() -> None:
    upright = SAMPLE.images[3]
    decoded = decode_image(_rotated_jpeg(upright)).astype(np.float32)
    assert np.abs(decoded - upright).mean() < 6.0  # JPEG noise only
    assert np.abs(np.rot90(decoded) - upright).mean() > 20.0  # while a wrong turn is far off


async def test_edge_classifies_a_rotated_photo_as_upright_and_names_the_class(client, edge) -> None:
    bundle = ModelBundle.open()
    for pixels in SAMPLE.images[:4]:
        status, rotated, _ = await post_edge(client, edge, _rotated_jpeg(pixels), codec="png")
        status_upright, upright, _ = await post_edge(client, edge, _upright_jpeg(pixels), codec="png")
        assert status == status_upright == 200, rotated
        assert rotated["labels"] == upright["labels"]
        assert rotated["classes"] == [bundle.class_names[rotated["labels"][0]]] == [CLASSES[rotated["labels"][0]]]


def _upright_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _png_claiming_size(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (what a decompression bomb looks like before inflating)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("body", "content_type", "codec", "status", "message"),
    [
        (b"hello, not an image", "image/jpeg", None, 422, "image 0: not a decodable image: expected PNG, JPEG or WEBP"),
        ("truncated", "image/jpeg", None, 422, "image 0"),
        (_png_claiming_size(5_000, 5_000), "image/png", None, 422, "exceeds the limit"),
        ("valid", "text/plain", None, 415, "Content-Type"),
        (b"", "image/jpeg", None, 400, "empty"),
        ("oversize batch", CONTENT_TYPE, None, 400, "allowed 1..256"),
        ("valid", "image/jpeg", "gif", 400, "unknown codec"),
        (b"PMC2 but broken", CONTENT_TYPE, None, 400, "wire-format version"),
        ("neural batch", CONTENT_TYPE, None, 400, "takes images from clients"),
    ],
)
async def test_bad_requests_get_a_json_4xx(client, edge, body, content_type, codec, status, message) -> None:
    valid = jpeg(SAMPLE.images[0])
    body = {
        "truncated": valid[: len(valid) // 2], "valid": valid,
        "oversize batch": EncodedBatch("jpeg", [valid] * 257).to_bytes() if body == "oversize batch" else None,
        "neural batch": EncodedBatch("neural", [b"12345678"]).to_bytes(),
    }.get(body, body) if isinstance(body, str) else body
    got_status, reply, _ = await post_edge(client, edge, body, content_type=content_type, codec=codec)
    assert got_status == status and message in reply["error"], reply
    assert "<_io" not in reply["error"] and "object at 0x" not in reply["error"], reply  # no Python internals


async def test_an_unknown_protector_gets_a_json_400(client, edge) -> None:
    status, reply, _ = await post_edge(client, edge, jpeg(SAMPLE.images[0]), protector="instahide")
    assert status == 400 and "unknown protector 'instahide'" in reply["error"] and "dapter" in reply["error"], reply


async def test_oversize_body_is_refused(client, certificates, cloud) -> None:
    async with serve_tls(create_edge_app(edge_config(certificates, cloud.url, max_body_bytes=10_000)),
                         certificates.edge) as edge:
        status, reply, _ = await post_edge(client, edge, b"\xff" * 20_000)
    assert status == 413 and reply["status"] == 413


@pytest.mark.parametrize("policy, status", [("resize", 200), ("reject", 422)])
async def test_inputs_that_are_not_32x32(client, certificates, cloud, policy: str, status: int) -> None:
    big = np.asarray(Image.fromarray(SAMPLE.images[0]).resize((96, 64)))
    async with serve_tls(create_edge_app(edge_config(certificates, cloud.url, resize_policy=policy)),
                         certificates.edge) as edge:
        got, reply, _ = await post_edge(client, edge, jpeg(big))
    assert got == status, reply


async def test_corrupt_neural_bitstreams_are_rejected_by_the_cloud(certificates, cloud) -> None:
    context = client_context(certificates.ca, certificates.edge_client, certificates.edge_client)
    good = EncodedBatch("neural", [b"\x00\x01\x02\x03\x04\x05\x06\x07"]).to_bytes()
    flipped = bytearray(good)
    flipped[-1] ^= 0x80
    cases = [(bytes(flipped), 400, "corrupted"), (EncodedBatch("neural", [b"\x01"]).to_bytes(), 422, "corrupt neural"),
             (EncodedBatch("neural-batch", [b"\x01"], 3).to_bytes(), 422, "corrupt neural"),
             (EncodedBatch("png", [b"nope"]).to_bytes(), 422, "image 0"), (b"", 400, "empty"),
             (EncodedBatch("webp", [jpeg(SAMPLE.images[0])]).to_bytes(), 200, "")]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        for body, status, message in cases:
            async with session.post(f"{cloud.url}/v1/classify", data=body,
                                    headers={"Content-Type": CONTENT_TYPE}) as response:
                reply = await response.json()
                assert response.status == status and message in reply.get("error", ""), reply


async def test_a_batch_of_latents_coded_with_other_tables_is_refused_by_the_cloud(certificates, cloud) -> None:
    """An edge names the entropy tables it coded with (X-PMC2-Tables); a cloud on another bundle answers 409."""
    bundle = ModelBundle.open()
    neural = codec_named("neural").build(CodecContext(bundle, g_a=bundle.session("g_a")))
    latents = EncodedBatch("neural", neural.encode(perturb(bundle.session("generator"), preprocess(SAMPLE.images[:4]))))
    pixels = EncodedBatch("jpeg", [jpeg(image) for image in SAMPLE.images[:4]])
    ours, other = bundle.tables_sha256(DEFAULT_COMPRESSOR), "0" * 64
    cases = [(latents, ours, 200, ""), (latents, None, 200, ""), (latents, other, 409, "same model bundle"),
             (pixels, other, 200, "")]  # pixels carry no latent: the tables do not matter
    context = client_context(certificates.ca, certificates.edge_client, certificates.edge_client)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        for batch, tables, status, message in cases:
            headers = {"Content-Type": CONTENT_TYPE, **({TABLES_HEADER: tables} if tables else {})}
            async with session.post(f"{cloud.url}/v1/classify", data=batch.to_bytes(), headers=headers) as response:
                reply = await response.json()
                assert response.status == status and message in reply.get("error", ""), reply


async def test_a_bad_request_does_not_disturb_others(client, edge) -> None:
    good = [post_edge(client, edge, jpeg(p)) for p in SAMPLE.images[:8]]
    bad = [post_edge(client, edge, b"garbage") for _ in range(8)]
    results = await asyncio.gather(*good, *bad)
    assert [status for status, _, _ in results] == [200] * 8 + [422] * 8


async def _slow_cloud(delay_s: float) -> web.Application:
    async def classify(request: web.Request) -> web.Response:
        batch = EncodedBatch.from_bytes(await request.read())
        await asyncio.sleep(delay_s)
        timings = {"decompression": 0.0, "recognition": 0.0, "other_cloud": 0.0, "total_cloud": 0.0}
        return web.json_response({"labels": [0] * len(batch.payloads), "timings_ms": timings})

    app = web.Application()
    app.router.add_post("/v1/classify", classify)
    return app


async def test_unreachable_cloud_gives_502_then_service_resumes(client, certificates) -> None:
    port = free_port()
    config = edge_config(certificates, f"https://localhost:{port}", cloud_connect_retries=1)
    async with serve_tls(create_edge_app(config), certificates.edge) as edge:
        status, reply, _ = await post_edge(client, edge, jpeg(SAMPLE.images[0]))
        assert status == 502 and "unreachable" in reply["error"]
        async with serve_tls(create_cloud_app(), certificates.cloud, client_ca=certificates.ca, port=port):
            status, reply, _ = await post_edge(client, edge, jpeg(SAMPLE.images[0]))
            assert status == 200, reply


async def test_slow_cloud_gives_504_within_the_timeout(client, certificates) -> None:
    async with serve_tls(await _slow_cloud(3.0), certificates.cloud) as slow:
        config = edge_config(certificates, slow.url, cloud_timeout_s=0.5, cloud_client_cert=None)
        async with serve_tls(create_edge_app(config), certificates.edge) as edge:
            started = asyncio.get_running_loop().time()
            status, reply, _ = await post_edge(client, edge, jpeg(SAMPLE.images[0]))
            assert status == 504 and "in time" in reply["error"]
            assert asyncio.get_running_loop().time() - started < 2.5


async def test_graceful_shutdown_finishes_in_flight_requests(client, certificates) -> None:
    async with serve_tls(await _slow_cloud(1.0), certificates.cloud) as slow:
        config = edge_config(certificates, slow.url, cloud_client_cert=None)
        async with serve_tls(create_edge_app(config), certificates.edge) as edge:
            in_flight = asyncio.create_task(post_edge(client, edge, jpeg(SAMPLE.images[0])))
            await asyncio.sleep(0.3)
            async with client.get(f"{edge.url}/metrics") as response:  # the autoscaler's queue metric sees it
                assert "pmc2_edge_outstanding_images 1.0" in await response.text()
            cleanup = asyncio.create_task(edge.runner.cleanup())
            await asyncio.sleep(0.1)
            assert edge.runner.app[DRAINING].is_set()  # unready while the request finishes
            await cleanup
            status, reply, _ = await in_flight
    assert status == 200 and reply["labels"] == [0]


async def test_health_readiness_and_metrics(client, edge) -> None:
    await post_edge(client, edge, jpeg(SAMPLE.images[0]))
    for path, needle in (("/healthz", "ok"), ("/readyz", "true"), ("/metrics", "pmc2_edge_requests_total"),
                         ("/metrics", "pmc2_edge_outstanding_images 0.0")):
        async with client.get(f"{edge.url}{path}") as response:
            assert response.status == 200 and needle in (await response.text())


async def test_an_overloaded_edge_answers_503_with_retry_after_and_serves_the_rest(client, certificates) -> None:
    async with serve_tls(await _slow_cloud(0.5), certificates.cloud) as slow:
        config = edge_config(certificates, slow.url, cloud_client_cert=None, max_queued_images=4, max_batch_size=2)
        async with serve_tls(create_edge_app(config), certificates.edge) as edge:
            replies = await asyncio.gather(*(post_edge(client, edge, jpeg(p)) for p in SAMPLE.images[:12]))
    statuses = [status for status, _, _ in replies]
    assert statuses.count(200) >= 4 and statuses.count(503) >= 1 and set(statuses) <= {200, 503}
    refused = next(response for status, _, response in replies if status == 503)
    assert refused.headers["Retry-After"] == "1"


async def test_the_cloud_batches_concurrent_requests(certificates, cloud) -> None:
    bundle = ModelBundle.open()
    images = perturb(bundle.session("generator"), preprocess(SAMPLE.images))
    png = codec_named("png").build(CodecContext())
    bodies = [EncodedBatch("png", png.encode(image[None])).to_bytes() for image in images]
    expected = classify(bundle.session("target"), png.decode(png.encode(images), len(images))).tolist()
    context = client_context(certificates.ca, certificates.edge_client, certificates.edge_client)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:

        async def post(body: bytes) -> dict:
            async with session.post(f"{cloud.url}/v1/classify", data=body, headers={"Content-Type": CONTENT_TYPE}) as r:
                assert r.status == 200
                return await r.json()

        replies = await asyncio.gather(*(post(body) for body in bodies))
    assert [reply["labels"][0] for reply in replies] == expected
    assert max(reply["batch_size"] for reply in replies) > 1  # requests shared target calls

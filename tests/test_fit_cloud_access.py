"""Black-box access through a real cloud on loopback (mutual TLS), and the cloud's per-client rate limit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import trustme

from pmc2.cloud_server.app import create_app as create_cloud_app
from pmc2.cloud_server.config import CloudConfig
from pmc2.fit.access import BLACK_BOX, QueryCount
from pmc2.fit.cloud_labeler import CloudLabeler
from pmc2.fit.targets import TargetOptions, resolve_target
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.link_codecs import CodecContext, codec_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.runtime.pipeline import classify
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
from pmc2.serving.dev_certs import create_dev_certificates
from pmc2.serving.http_common import METRICS
from pmc2.serving.rate_limit import OverBurst, RateLimited, RateLimiter
from pmc2.serving.tls import client_context
from tests.servers import serve_tls
from tests.test_fit_targets import assert_holds_no_model

SESSIONS = SessionSettings(intra_op_threads=1)
IMAGES = load_evaluation(None).images[:60]
PNG = codec_named("png").build(CodecContext())


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory):
    return create_dev_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def png_link_labels() -> np.ndarray:
    """What the runtime computes in-process for IMAGES sent over the PNG link."""
    unit = to_unit_nchw(IMAGES)
    return classify(ModelBundle.open().session("target", SESSIONS), PNG.decode(PNG.encode(unit), len(unit)))


def labeler_for(cloud, certificates) -> CloudLabeler:
    options = TargetOptions(ca=certificates.ca, client_cert=certificates.fitter, sessions=SESSIONS)
    labeler = resolve_target(f"{cloud.url}/v1/classify", options=options)
    assert isinstance(labeler, CloudLabeler) and labeler.kind == BLACK_BOX
    labeler.batch_images = 16
    return labeler


def served(app, metric: str, **labels: str) -> float:
    return app[METRICS].registry.get_sample_value(f"pmc2_cloud_{metric}_total", labels) or 0.0


async def test_the_cloud_labels_what_the_runtime_computes_and_each_image_is_paid_once(
        certificates, png_link_labels: np.ndarray) -> None:
    app = create_cloud_app(CloudConfig(sessions=SESSIONS))
    async with serve_tls(app, certificates.cloud, client_ca=certificates.ca) as cloud:
        labeler = labeler_for(cloud, certificates)
        assert labeler.description == f"black-box through the cloud at {cloud.url}/v1/classify"
        labels = await asyncio.to_thread(labeler.labels, IMAGES[:40])
        assert (labels == png_link_labels[:40]).all()
        assert labeler.count == QueryCount(images_queried=40, images_from_cache=0, requests=3)
        again = np.concatenate([IMAGES[30:50], IMAGES[[0, 0, 45]]])  # 10 answered, 10 new, copies of both
        labels = await asyncio.to_thread(labeler.labels, again)
        assert (labels == png_link_labels[[*range(30, 50), 0, 0, 45]]).all()
        assert labeler.count == QueryCount(images_queried=50, images_from_cache=13, requests=4)
        assert served(app, "images") == 50 and served(app, "requests", path="/v1/classify", status="200") == 4
        assert_holds_no_model(labeler)
        labeler.close()


async def test_the_labeler_waits_out_the_rate_limit_and_completes(certificates, png_link_labels: np.ndarray) -> None:
    app = create_cloud_app(CloudConfig(sessions=SESSIONS, client_images_per_s=20, client_burst_images=16))
    async with serve_tls(app, certificates.cloud, client_ca=certificates.ca) as cloud:
        labeler, waits = labeler_for(cloud, certificates), []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        labeler.sleep = sleep
        start = time.perf_counter()
        labels = await asyncio.to_thread(labeler.labels, IMAGES[:48])
        elapsed = time.perf_counter() - start
        labeler.close()
    assert (labels == png_link_labels[:48]).all()
    assert labeler.count.requests == 3 and labeler.count.images_queried == 48 and labeler.count.throttled >= 1
    assert waits == [1.0] * labeler.count.throttled and elapsed >= sum(waits)
    assert served(app, "requests", path="/v1/classify", status="429") == labeler.count.throttled
    assert served(app, "images") == 48


def _pem(path: Path, blob) -> Path:
    blob.write_to_path(str(path))
    return path


async def _post(url: str, context, images: int) -> tuple[int, dict, str | None]:
    body = EncodedBatch("png", PNG.encode(to_unit_nchw(IMAGES[:images]))).to_bytes()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.post(f"{url}/v1/classify", data=body, headers={"Content-Type": CONTENT_TYPE}) as response:
            return response.status, await response.json(), response.headers.get("Retry-After")


async def test_the_rate_limit_is_per_client_certificate_and_answers_429_with_retry_after(tmp_path: Path) -> None:
    authority = trustme.CA()
    ca = _pem(tmp_path / "ca.pem", authority.cert_pem)
    server = _pem(tmp_path / "cloud.pem", authority.issue_cert("localhost").private_key_and_cert_chain_pem)
    clients = [_pem(tmp_path / f"{name}.pem",
                    authority.issue_cert(name, common_name=name).private_key_and_cert_chain_pem)
               for name in ("client-a", "client-b")]
    first, second = (client_context(ca, client, client) for client in clients)
    app = create_cloud_app(CloudConfig(sessions=SESSIONS, client_images_per_s=0.5, client_burst_images=4))
    async with serve_tls(app, server, client_ca=ca) as cloud:
        assert (await _post(cloud.url, first, 4))[0] == 200
        status, reply, retry_after = await _post(cloud.url, first, 1)
        assert status == 429 and reply["status"] == 429 and "rate limit of 0.5 images/s (burst 4)" in reply["error"]
        assert retry_after == "2"
        assert (await _post(cloud.url, second, 4))[0] == 200  # another certificate, another bucket
        status, reply, retry_after = await _post(cloud.url, second, 5)
        assert status == 413 and "at most 4 images" in reply["error"] and retry_after is None


async def test_without_mutual_tls_a_client_is_its_address(certificates) -> None:
    app = create_cloud_app(CloudConfig(sessions=SESSIONS, client_images_per_s=0.5, client_burst_images=4))
    async with serve_tls(app, certificates.cloud) as cloud:
        anonymous = client_context(certificates.ca)
        assert [(await _post(cloud.url, anonymous, images))[0] for images in (3, 1, 1)] == [200, 200, 429]


def test_a_token_bucket_refills_at_its_rate_up_to_its_burst_and_forgets_full_buckets() -> None:
    now = [0.0]
    limiter = RateLimiter(images_per_s=2.0, burst=4, clock=lambda: now[0], max_clients=2)
    limiter.take("a", 4)
    with pytest.raises(RateLimited) as refused:
        limiter.take("a", 3)
    assert refused.value.retry_after_s == 2  # 3 images at 2/s: 1.5 s, rounded up
    now[0] = 1.0
    limiter.take("a", 2)
    with pytest.raises(OverBurst, match="at most 4 images"):
        limiter.take("a", 5)
    limiter.take("b", 1)
    now[0] = 100.0
    limiter.take("c", 1)  # a third client: the full buckets of a and b are forgotten
    assert list(limiter.buckets) == ["c"]
    limiter.take("a", 4)  # a forgotten bucket is a full one


@pytest.mark.parametrize("field", ["client_images_per_s", "client_burst_images"])
def test_the_rate_limit_settings_are_checked(field: str) -> None:
    assert CloudConfig().client_images_per_s is None  # off unless asked for
    with pytest.raises(ValueError, match=f"{field} must be > 0"):
        CloudConfig(**{field: 0})


def test_the_cloud_command_refuses_a_rate_out_of_range(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pmc2.cloud_server", "--cert", "cloud.pem",
                             "--client-images-per-s", "0"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and "argument --client-images-per-s:" in result.stderr, result.stderr[-1000:]

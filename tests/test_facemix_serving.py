"""FaceMix, the split protector, through the real servers on loopback with TLS: the cloud only ever sees keyed
mixtures of features at /v1/split/facemix, the edge demixes its answers, and bad feature payloads, unknown
protectors and bundles without the protector get a JSON 4xx."""

from __future__ import annotations

import aiohttp
import numpy as np
import pytest

from pmc2.cloud_server.app import create_app as create_cloud_app
from pmc2.cloud_server.config import CloudConfig
from pmc2.edge_server.state import STATE
from pmc2.mobile_client.modes import Phone
from pmc2.mobile_client.run import run_mode, summarize
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.facemix import FEATURES, GROUP_SIZE, FaceMix
from pmc2.runtime.image_decoding import decode_image
from pmc2.runtime.model_bundle import ModelBundle, run_single_output
from pmc2.runtime.pipeline import preprocess
from pmc2.runtime.protection import bundle_protectors, protector_named
from pmc2.runtime.tensor_payload import CONTENT_TYPE as NPY, from_npy, to_npy
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
from pmc2.serving.tls import client_context
from pmc2.training.pairs import PAIRS
from tests.servers import serve_tls
from tests.test_servers import SESSIONS, TOKEN, certificates, client, cloud, edge, jpeg, post_edge  # noqa: F401 (fixtures)

SAMPLE = load_evaluation(None).subset(slice(0, 32))
BUNDLE = ModelBundle.open()


def test_the_default_bundle_serves_facemix() -> None:
    assert protector_named("facemix").split is FaceMix
    assert "facemix" in bundle_protectors(BUNDLE, "split") and len(BUNDLE.stored_array(FaceMix.DECOYS)) == 128


async def test_the_edge_answers_with_the_labels_its_keys_demix_to(client, edge, cloud) -> None:
    """Replaying the edge's keys in-process (same seed, same float16 wire) gives exactly the edge's labels;
    the cloud received that float16 mixture (six images and two decoys), no image and no key."""
    edge.app[STATE].split["facemix"].rng = np.random.default_rng(7)
    pixels = SAMPLE.images[:6]
    body = EncodedBatch("jpeg", [jpeg(p) for p in pixels]).to_bytes()  # one request: one batch, one set of keys
    status, reply, _ = await post_edge(client, edge, body, content_type=CONTENT_TYPE, protector="facemix")
    assert status == 200, reply
    assert reply["protector"] == "facemix" and reply["codec"] == FaceMix.link
    replay = FaceMix(BUNDLE, "edge", SESSIONS, rng=np.random.default_rng(7))
    mixed, keys = replay.edge_part(np.stack([decode_image(jpeg(p)) for p in pixels]))
    assert len(mixed) == 8 and [len(key) for key in keys] == [GROUP_SIZE, GROUP_SIZE]
    sent = from_npy(to_npy(mixed), mixed.shape[1:], len(mixed))
    returned = from_npy(to_npy(FaceMix(BUNDLE, "cloud", SESSIONS).cloud_part(sent)), replay.cloud_output_shape, len(mixed))
    assert reply["labels"] == replay.finish(returned, keys, len(pixels)).tolist()
    np.testing.assert_array_equal(from_npy(cloud.bodies[-1], mixed.shape[1:], len(mixed)), sent)
    assert reply["s2_bytes"][0] == pytest.approx(len(cloud.bodies[-1]) / len(pixels))


async def test_a_lone_image_leaves_mixed_with_three_others(client, edge, cloud) -> None:
    """One image per request: the cloud gets four mixtures, none of them ± that image's own features."""
    image = SAMPLE.images[0]
    status, reply, _ = await post_edge(client, edge, jpeg(image), protector="facemix")
    assert status == 200, reply
    received = from_npy(cloud.bodies[-1], (64, 16, 16), GROUP_SIZE)
    own = run_single_output(FaceMix(BUNDLE, "edge", SESSIONS).sessions[FEATURES.name],
                            preprocess(decode_image(jpeg(image))[None]))
    assert len(received) == GROUP_SIZE
    for mixture in received:
        assert min(np.abs(mixture - own[0]).max(), np.abs(mixture + own[0]).max()) > 0.05


async def test_the_phone_asks_for_facemix_and_gets_usable_labels(certificates, edge, cloud) -> None:
    phone = Phone(edge.url, cloud.url, TOKEN, 90, None, BUNDLE, protector="facemix")
    records = await run_mode(phone, "pmc2", SAMPLE, client_context(certificates.ca), concurrency=4, progress=False)
    summary = summarize(records)
    assert summary["errors"] == 0, summary["first_error"]
    assert summary["accuracy"] >= 60  # a trained FaceMix model, fresh keys for every batch
    assert summary["s2_bytes_mean"] > 32 * 1024  # at least one float16 mixture of 64×16×16 per image


@pytest.fixture
async def cloud_client(certificates):
    context = client_context(certificates.ca, certificates.edge_client, certificates.edge_client)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


@pytest.mark.parametrize(("body", "message"), [
    (b"not a tensor", "not a .npy array"),
    (to_npy(np.zeros((2, 3, 16, 16))), "expected shape"),
    (to_npy(np.full((1, 64, 16, 16), np.inf)), "finite"),
])
async def test_bad_feature_payloads_get_a_json_400(cloud_client, cloud, body: bytes, message: str) -> None:
    async with cloud_client.post(f"{cloud.url}/v1/split/facemix", data=body, headers={"Content-Type": NPY}) as response:
        reply = await response.json()
    assert response.status == 400 and message in reply["error"], reply


async def test_the_split_route_refuses_unknown_protectors_and_bundles_without_one(certificates, cloud_client) -> None:
    """400 for a name that is no split protector (unknown, or an image protector); 404 from a cloud whose bundle
    lacks the protector (the second pair's: FaceMix is exported with the default pair only)."""
    body = to_npy(np.zeros((4, 64, 16, 16)))
    cloud_app = create_cloud_app(CloudConfig(models=PAIRS["compact_resnet"].onnx_models, sessions=SESSIONS))
    async with serve_tls(cloud_app, certificates.cloud, client_ca=certificates.ca) as cloud:
        for protector, status, message in (("nonsense", 400, "unknown protector"), ("dapter", 400, "not 'split'"),
                                           ("facemix", 404, "no model for split protector 'facemix'")):
            async with cloud_client.post(f"{cloud.url}/v1/split/{protector}", data=body,
                                         headers={"Content-Type": NPY}) as response:
                reply = await response.json()
            assert response.status == status and message in reply["error"], (protector, reply)


async def test_facemix_takes_no_link_codec(client, edge) -> None:
    status, reply, _ = await post_edge(client, edge, jpeg(SAMPLE.images[0]), codec="neural", protector="facemix")
    assert status == 400 and "sends facemix-features" in reply["error"], reply

"""Property-based fuzzing of the running edge and cloud, with good requests interleaved.

    python -m pmc2.bench.fuzz_servers [--requests 10000] [--out reports/bench/fuzz.json]

Both servers run as real processes on loopback with TLS (the cloud with mutual TLS). Hypothesis
generates each request: random bytes, valid images of odd sizes and modes with EXIF orientations,
truncated images, decompression-bomb headers, wire batches mutated before or after their CRC, and
rANS bitstreams of every length wrapped in valid batches. Every POST route is fuzzed: the edge's
/v1/recognize and /v1/inspect (with every query parameter they read, ``codec`` and ``protector``, known
and made up) and the cloud's /v1/classify and /v1/split/<protector> for each split protector of the bundle
(.npy files of right and wrong shapes, dtypes and orders, non-finite values, pickled objects, truncated
headers). The property: every answer has a status below 500 and every refusal is a JSON error. Every tenth
request is followed by a good one whose label must be the one the runtime computes in-process. Afterwards both
servers must still be ready.
The results name the CPU and the sha256 of the model bundle they measured.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import ssl
import struct
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from urllib.parse import quote

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from pmc2.machine import cpu_model
from pmc2.serving.local_stack import local_stack
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY, jpeg_bytes
from pmc2.runtime.image_decoding import decode_image
from pmc2.runtime.link_codecs import LINK_CODECS, CodecContext, PillowLink, codec_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.paths import REPORTS
from pmc2.runtime.pipeline import classify
from pmc2.runtime.protection import PROTECTORS, Protector, bundle_protectors, split_protector
from pmc2.runtime.split_protection import SPLIT_ROUTE, SplitProtector
from pmc2.runtime.tensor_payload import CONTENT_TYPE as NPY
from pmc2.runtime.tensor_payload import TensorPayloadError, from_npy, to_npy
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
from pmc2.value_ranges import positive_int

GOOD_EVERY = 10
PIXEL_CODECS = tuple(name for name, codec in LINK_CODECS.items() if issubclass(codec, PillowLink))
STREAM_CODECS = tuple(name for name in LINK_CODECS if name not in PIXEL_CODECS)
EDGE_TYPES = ("image/jpeg", "image/png", CONTENT_TYPE, "text/plain", "application/octet-stream")
PNG_MODES = ("RGB", "L", "RGBA", "P", "LA", "I;16", "1")
JPEG_MODES = ("RGB", "L", "CMYK")


class HttpsClient:
    """One keep-alive HTTPS connection that reconnects when the server closes it."""

    def __init__(self, url: str, context: ssl.SSLContext) -> None:
        host, port = url.removeprefix("https://").split(":")
        self.host, self.port, self.context = host, int(port), context
        self.connection: http.client.HTTPSConnection | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, response body)."""
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
            try:
                self.connection.request("POST", path, body=body, headers=headers)
                response = self.connection.getresponse()
                raw = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        return response.status, raw

    def get_status(self, path: str) -> int:
        self.close()
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
        connection.request("GET", path)
        status = connection.getresponse().status
        connection.close()
        return status

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


# ---------------------------------------------------------------------------- request strategies

@st.composite
def odd_images(draw) -> bytes:
    """A real PNG or JPEG of a random size and colour mode, sometimes with an EXIF orientation."""
    width, height = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    image_format = draw(st.sampled_from(("PNG", "JPEG")))
    mode = draw(st.sampled_from(PNG_MODES if image_format == "PNG" else JPEG_MODES))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = draw(st.integers(0, 9))  # 0 and 9 are not valid orientations
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, exif=exif.tobytes())
    return buffer.getvalue()


def _png_header_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def bombs() -> st.SearchStrategy[bytes]:
    return st.builds(_png_header_claiming, st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))


def truncated(images: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(images, st.floats(0.0, 1.0)).map(lambda pair: pair[0][: int(len(pair[0]) * pair[1])])


def mutated(data: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Flip, insert or delete a few bytes."""

    @st.composite
    def mutate(draw) -> bytes:
        buffer = bytearray(draw(data))
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, max(0, len(buffer))))
            action = draw(st.sampled_from(("flip", "insert", "delete")))
            if action == "flip" and position < len(buffer):
                buffer[position] ^= draw(st.integers(1, 255))
            elif action == "insert":
                buffer[position:position] = draw(st.binary(min_size=1, max_size=8))
            elif position < len(buffer):
                del buffer[position]
        return bytes(buffer)

    return mutate()


def wire_batches(payloads: st.SearchStrategy[bytes], codecs: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """Valid version-1 batches (CRC and lengths right) around the given payloads."""

    @st.composite
    def batch(draw) -> bytes:
        codec = draw(st.sampled_from(codecs))
        if LINK_CODECS[codec].one_stream:
            return EncodedBatch(codec, [draw(payloads)], draw(st.integers(1, 256))).to_bytes()
        return EncodedBatch(codec, draw(st.lists(payloads, min_size=1, max_size=4))).to_bytes()

    return batch()


def rans_streams() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), st.integers(0, 300).map(lambda n: b"\xff" * n))


def queries() -> st.SearchStrategy[str]:
    """Query strings over every parameter the edge reads: known and made-up codec and protector names,
    alone, together, repeated, and unknown parameters."""
    names = {"codec": st.one_of(st.sampled_from(tuple(LINK_CODECS)), st.text(max_size=12)),
             "protector": st.one_of(st.sampled_from(tuple(PROTECTORS)), st.text(max_size=12))}
    pair = st.one_of(*(st.tuples(st.just(key), values) for key, values in names.items()),
                     st.tuples(st.text(max_size=8), st.text(max_size=8)))
    return st.lists(pair, max_size=3).map(
        lambda pairs: "?" + "&".join(f"{quote(key)}={quote(value)}" for key, value in pairs) if pairs else "")


def image_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(odd_images(), truncated(odd_images()), bombs(), st.binary(max_size=2048))


def edge_requests() -> st.SearchStrategy[tuple[str, str, bytes]]:
    """(content type, query string, body) of a request to /v1/recognize or /v1/inspect."""
    images = image_bodies()
    bodies = st.one_of(images, wire_batches(images, PIXEL_CODECS), mutated(wire_batches(images, PIXEL_CODECS)),
                       wire_batches(rans_streams(), STREAM_CODECS), st.binary(max_size=64))
    return st.tuples(st.sampled_from(EDGE_TYPES), queries(), bodies)


def cloud_requests() -> st.SearchStrategy[tuple[str, str, bytes]]:
    """(content type, query string, body) of a request to /v1/classify."""
    images = image_bodies()
    bodies = st.one_of(wire_batches(rans_streams(), STREAM_CODECS), wire_batches(images, PIXEL_CODECS),
                       mutated(wire_batches(rans_streams(), tuple(LINK_CODECS))), st.binary(max_size=256))
    return st.tuples(st.sampled_from((CONTENT_TYPE, CONTENT_TYPE, CONTENT_TYPE, "image/png")), st.just(""), bodies)


def npy_arrays(item_shape: tuple[int, ...]) -> st.SearchStrategy[bytes]:
    """.npy files near and far from what a split route accepts: right or wrong item shape, count, dtype and
    order, non-finite values, pickled object arrays, headers promising more than follows."""

    @st.composite
    def array(draw) -> bytes:
        count = draw(st.sampled_from((0, 1, 2, 4, 5)))
        shape = (count, *item_shape) if draw(st.booleans()) else (count, *draw(st.lists(st.integers(0, 9), max_size=4)))
        dtype = draw(st.sampled_from((np.float16, np.float16, np.float32, np.int8, np.complex64, object)))
        values = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape)
        values = values.astype(dtype)
        if dtype is np.float16 and values.size and draw(st.booleans()):
            values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from((np.nan, np.inf, -np.inf)))
        if draw(st.booleans()):
            values = np.asfortranarray(values)
        buffer = io.BytesIO()
        np.save(buffer, values, allow_pickle=True)
        data = buffer.getvalue()
        return data[: draw(st.integers(0, len(data)))] if draw(st.integers(0, 4)) == 0 else data

    return array()


def accepted_arrays(item_shape: tuple[int, ...]) -> st.SearchStrategy[bytes]:
    """.npy files a split route takes: 1–4 finite float16 items of ``item_shape``, in C order."""
    return st.tuples(st.integers(1, 4), st.integers(0, 2**16)).map(
        lambda drawn: to_npy(np.random.default_rng(drawn[1]).standard_normal((drawn[0], *item_shape))))


def split_requests(item_shape: tuple[int, ...]) -> st.SearchStrategy[tuple[str, str, bytes]]:
    """(content type, query string, body) of a request to a split protector's route."""
    bodies = st.one_of(accepted_arrays(item_shape), npy_arrays(item_shape), mutated(npy_arrays(item_shape)),
                       st.binary(max_size=256))
    return st.tuples(st.sampled_from((NPY, NPY, NPY, CONTENT_TYPE, "text/plain")), st.just(""), bodies)


# ---------------------------------------------------------------------------- the property

@dataclass(frozen=True)
class GoodRequest:
    """A well-formed request and the label the runtime computes for it in-process; ``label_of`` reads the
    label from the server's reply body."""

    path: str
    content_type: str
    body: bytes
    label: int
    label_of: Callable[[bytes], int]


@dataclass(frozen=True)
class Endpoint:
    """One server route: its generated requests and the good requests interleaved with them."""

    server: str
    path: str
    requests: st.SearchStrategy[tuple[str, str, bytes]]
    good: list[GoodRequest]

    @property
    def name(self) -> str:
        return f"{self.server} {self.path}"


def _json_labels(body: bytes) -> int:
    (label,) = json.loads(body)["labels"]
    return label


def _json_label(body: bytes) -> int:
    return json.loads(body)["label"]


def endpoints(bundle: ModelBundle, count: int = 16) -> list[Endpoint]:
    """Every POST route of the edge and the cloud, with good requests whose labels come from the runtime."""
    pixels = load_evaluation(None).images[:count]
    jpegs = [jpeg_bytes(p, PHONE_JPEG_QUALITY) for p in pixels]
    session = cache(bundle.session)
    g_a, g_s = session("g_a"), session("g_s")
    protector = Protector(bundle, session=session)
    perturbed = protector.perturb(np.stack([decode_image(b) for b in jpegs]))
    context = CodecContext(bundle, g_a=g_a, g_s=g_s)
    png, neural = (codec_named(name).build(context) for name in ("png", "neural"))
    target = bundle.session("target")
    png_labels = classify(target, png.decode(png.encode(protector.pixels_for_links(perturbed)), count)).tolist()
    streams = neural.encode(perturbed)
    neural_labels = classify(target, neural.decode(streams, count)).tolist()
    edge_good = [GoodRequest("/v1/recognize?codec=png", "image/jpeg", body, label, _json_labels)
                 for body, label in zip(jpegs, png_labels, strict=True)]
    inspect_good = [GoodRequest("/v1/inspect?codec=png", "image/jpeg", body, label, _json_label)
                    for body, label in zip(jpegs, png_labels, strict=True)]
    cloud_good = [GoodRequest("/v1/classify", CONTENT_TYPE, EncodedBatch("neural", [stream]).to_bytes(), label,
                              _json_labels) for stream, label in zip(streams, neural_labels, strict=True)]
    routes = [Endpoint("edge", "/v1/recognize", edge_requests(), edge_good),
              Endpoint("edge", "/v1/inspect", edge_requests(), inspect_good),
              Endpoint("cloud", "/v1/classify", cloud_requests(), cloud_good)]
    routes += [_split_endpoint(bundle, name, pixels) for name in bundle_protectors(bundle, "split", side="cloud")]
    return routes


def _split_endpoint(bundle: ModelBundle, name: str, pixels: np.ndarray) -> Endpoint:
    """Good requests: one image through the split protector's edge part (with its padding); the label comes from
    its finishing step on the reply."""
    edge = split_protector(name, bundle, "edge", rng=np.random.default_rng(0))
    cloud = split_protector(name, bundle, "cloud")
    good = []
    for image in pixels:
        sent, secret = edge.edge_part(image[None])
        body = to_npy(sent)
        received = from_npy(body, cloud.cloud_input_shape, len(sent))
        label = int(edge.finish(cloud.cloud_part(received), secret, 1)[0])
        good.append(GoodRequest(SPLIT_ROUTE.format(protector=name), NPY, body, label,
                                partial(_split_label, edge, secret, len(sent))))
    return Endpoint("cloud", SPLIT_ROUTE.format(protector=name), split_requests(cloud.cloud_input_shape), good)


def _split_label(edge: SplitProtector, secret: object, sent: int, body: bytes) -> int:
    return int(edge.finish(from_npy(body, edge.cloud_output_shape, sent), secret, 1)[0])


@dataclass
class FuzzStats:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    not_json: int = 0
    good_requests: int = 0
    good_wrong: int = 0

    def as_dict(self) -> dict:
        return {"requests": self.requests, "statuses": dict(sorted(self.statuses.items())),
                "responses_5xx": len(self.server_errors), "first_5xx": self.server_errors[:3],
                "non_json_error_bodies": self.not_json, "good_requests": self.good_requests,
                "good_requests_wrong": self.good_wrong}

    def answer(self, status: int, body: bytes, description: str) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if status >= 500:
            self.server_errors.append(f"{status} for {description}: {body[:200]!r}")
        if status != 200 and not _is_json_error(body):
            self.not_json += 1

    def good_answer(self, request: GoodRequest, status: int, body: bytes) -> None:
        self.good_requests += 1
        try:
            self.good_wrong += status != 200 or request.label_of(body) != request.label
        except (ValueError, KeyError, TensorPayloadError):
            self.good_wrong += 1


def _is_json_error(body: bytes) -> bool:
    try:
        return "error" in json.loads(body)
    except ValueError:
        return False


def fuzz(client: HttpsClient, endpoint: Endpoint, headers: dict[str, str], examples: int, stats: FuzzStats) -> None:
    """``examples`` generated requests to one route; after every ``GOOD_EVERY``-th, a good one."""
    index = iter(range(10**9))

    @settings(max_examples=examples, deadline=None, database=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(endpoint.requests)
    def property_(request: tuple[str, str, bytes]) -> None:
        content_type, query, body = request
        status, reply = client.post(f"{endpoint.path}{query}", body, {**headers, "Content-Type": content_type})
        stats.answer(status, reply, f"{content_type} {query} {len(body)} B")
        number = next(index)
        if number % GOOD_EVERY == 0:
            good = endpoint.good[number // GOOD_EVERY % len(endpoint.good)]
            status, reply = client.post(good.path, good.body, {**headers, "Content-Type": good.content_type})
            stats.good_answer(good, status, reply)

    property_()


def run(examples: int, workdir: Path) -> dict:
    """Fuzz every POST route of one real edge + cloud stack; their figures and whether they stayed ready."""
    bundle = ModelBundle.open()
    results: dict = {"bundle_sha256": bundle.sha256, "cpu": cpu_model()}
    with local_stack(workdir) as stack:
        cloud_context = stack.client_ssl()
        cloud_context.load_cert_chain(stack.certificates.edge_client)
        clients = {"edge": HttpsClient(stack.edge_url, stack.client_ssl()),
                   "cloud": HttpsClient(stack.cloud_url, cloud_context)}
        headers = {"edge": {"Authorization": f"Bearer {stack.token}"}, "cloud": {}}
        for endpoint in endpoints(bundle):
            stats, start = FuzzStats(), time.perf_counter()
            fuzz(clients[endpoint.server], endpoint, headers[endpoint.server], examples, stats)
            results[endpoint.name] = {**stats.as_dict(), "seconds": round(time.perf_counter() - start, 1)}
        results["ready_after"] = {name: client.get_status("/readyz") == 200 for name, client in clients.items()}
        results["processes_alive_after"] = stack.alive()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=positive_int, default=10_000, help="generated requests per endpoint")
    parser.add_argument("--out", type=Path, default=REPORTS / "bench" / "fuzz.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        results = run(args.requests, Path(workdir))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"requests_per_endpoint": args.requests, **results}, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

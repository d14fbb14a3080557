"""Property-based fuzzing of the running edge and cloud, with good requests interleaved.

    python -m pmc2.bench.fuzz_servers [--requests 10000] [--out reports/bench/fuzz.json]

Both servers run as real processes on loopback with TLS (the cloud with mutual TLS). Hypothesis
generates each request: random bytes, valid images of odd sizes and modes with EXIF orientations,
truncated images, decompression-bomb headers, wire batches mutated before or after their CRC, and
rANS bitstreams of every length wrapped in valid batches. The property: every answer is JSON with a
status below 500. Every tenth request is followed by a good one whose label must be the one the
runtime computes in-process. Afterwards both servers must still be ready.
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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from pmc2.serving.local_stack import LocalStack, local_stack
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.image_codecs import jpeg_bytes
from pmc2.runtime.image_decoding import decode_image
from pmc2.runtime.link_codecs import LINK_CODECS, CodecContext, PillowLink, codec_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.paths import REPORTS
from pmc2.runtime.pipeline import classify
from pmc2.runtime.protection import Protector
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

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict | None]:
        """(status, JSON body or None when the body is not JSON)."""
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
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, None

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


def edge_requests() -> st.SearchStrategy[tuple[str, str, bytes]]:
    """(content type, query string, body) of a request to /v1/recognize."""
    images = st.one_of(odd_images(), truncated(odd_images()), bombs(), st.binary(max_size=2048))
    bodies = st.one_of(images, wire_batches(images, PIXEL_CODECS), mutated(wire_batches(images, PIXEL_CODECS)),
                       wire_batches(rans_streams(), STREAM_CODECS), st.binary(max_size=64))
    queries = st.one_of(st.just(""), st.sampled_from([f"?codec={name}" for name in LINK_CODECS]),
                        st.text(max_size=12).map(lambda text: f"?codec={quote(text)}"))
    return st.tuples(st.sampled_from(EDGE_TYPES), queries, bodies)


def cloud_requests() -> st.SearchStrategy[tuple[str, bytes]]:
    """(content type, body) of a request to /v1/classify."""
    images = st.one_of(odd_images(), truncated(odd_images()), bombs(), st.binary(max_size=2048))
    bodies = st.one_of(wire_batches(rans_streams(), STREAM_CODECS), wire_batches(images, PIXEL_CODECS),
                       mutated(wire_batches(rans_streams(), tuple(LINK_CODECS))), st.binary(max_size=256))
    return st.tuples(st.sampled_from((CONTENT_TYPE, CONTENT_TYPE, CONTENT_TYPE, "image/png")), bodies)


# ---------------------------------------------------------------------------- the property

@dataclass
class GoodRequests:
    """Well-formed requests and the labels the runtime computes for them in-process."""

    edge_bodies: list[bytes]
    cloud_bodies: list[bytes]
    labels: list[int]

    @classmethod
    def build(cls, count: int = 16) -> "GoodRequests":
        bundle, pixels = ModelBundle.open(), load_evaluation(None).images[:count]
        edge_bodies = [jpeg_bytes(p, 90) for p in pixels]
        g_a, g_s = bundle.session("g_a"), bundle.session("g_s")
        protector = Protector(bundle, g_a=g_a, g_s=g_s)
        perturbed = protector.perturb(np.stack([decode_image(b) for b in edge_bodies]))
        context = CodecContext(bundle, g_a=g_a, g_s=g_s)
        png, neural = (codec_named(name).build(context) for name in ("png", "neural"))
        carried = protector.pixels_for_links(perturbed)  # what the edge's PNG link sends
        labels = classify(bundle.session("target"), png.decode(png.encode(carried), count)).tolist()
        streams = neural.encode(perturbed)
        cloud_bodies = [EncodedBatch("neural", [stream]).to_bytes() for stream in streams]
        cloud_labels = classify(bundle.session("target"), neural.decode(streams, count)).tolist()
        return cls(edge_bodies, cloud_bodies, labels + cloud_labels)


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


def _check_answer(stats: FuzzStats, status: int, reply: dict | None, description: str) -> None:
    stats.requests += 1
    stats.statuses[status] += 1
    if status >= 500:
        stats.server_errors.append(f"{status} for {description}: {reply}")
    if status != 200 and (reply is None or "error" not in reply):
        stats.not_json += 1


def fuzz_edge(stack: LocalStack, good: GoodRequests, examples: int, stats: FuzzStats) -> None:
    client = HttpsClient(stack.edge_url, stack.client_ssl())
    auth = {"Authorization": f"Bearer {stack.token}"}
    index = iter(range(10**9))

    @settings(max_examples=examples, deadline=None, database=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(edge_requests())
    def property_(request: tuple[str, str, bytes]) -> None:
        content_type, query, body = request
        status, reply = client.post(f"/v1/recognize{query}", body, {**auth, "Content-Type": content_type})
        _check_answer(stats, status, reply, f"{content_type} {query} {len(body)} B")
        number = next(index)
        if number % GOOD_EVERY == 0:
            which = number // GOOD_EVERY % len(good.edge_bodies)
            status, reply = client.post("/v1/recognize?codec=png", good.edge_bodies[which],
                                        {**auth, "Content-Type": "image/jpeg"})
            stats.good_requests += 1
            stats.good_wrong += status != 200 or reply["labels"] != [good.labels[which]]

    property_()
    client.close()


def fuzz_cloud(stack: LocalStack, good: GoodRequests, examples: int, stats: FuzzStats) -> None:
    context = stack.client_ssl()
    context.load_cert_chain(stack.certificates.edge_client)
    client = HttpsClient(stack.cloud_url, context)
    index = iter(range(10**9))
    offset = len(good.edge_bodies)

    @settings(max_examples=examples, deadline=None, database=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(cloud_requests())
    def property_(request: tuple[str, bytes]) -> None:
        content_type, body = request
        status, reply = client.post("/v1/classify", body, {"Content-Type": content_type})
        _check_answer(stats, status, reply, f"{content_type} {len(body)} B")
        number = next(index)
        if number % GOOD_EVERY == 0:
            which = number // GOOD_EVERY % len(good.cloud_bodies)
            status, reply = client.post("/v1/classify", good.cloud_bodies[which], {"Content-Type": CONTENT_TYPE})
            stats.good_requests += 1
            stats.good_wrong += status != 200 or reply["labels"] != [good.labels[offset + which]]

    property_()
    client.close()


def run(examples: int, workdir: Path) -> dict:
    """Fuzz both endpoints of one real edge + cloud stack; their figures and whether they stayed ready."""
    good = GoodRequests.build()
    results = {}
    with local_stack(workdir) as stack:
        for name, fuzz in (("edge /v1/recognize", fuzz_edge), ("cloud /v1/classify", fuzz_cloud)):
            stats, start = FuzzStats(), time.perf_counter()
            fuzz(stack, good, examples, stats)
            results[name] = {**stats.as_dict(), "seconds": round(time.perf_counter() - start, 1)}
        context = stack.client_ssl()
        context.load_cert_chain(stack.certificates.edge_client)
        results["ready_after"] = {
            "edge": HttpsClient(stack.edge_url, stack.client_ssl()).get_status("/readyz") == 200,
            "cloud": HttpsClient(stack.cloud_url, context).get_status("/readyz") == 200,
        }
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

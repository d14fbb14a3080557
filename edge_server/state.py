"""What a running edge holds (models, worker thread, cloud link, one micro-batcher per protector and link
codec), and the bearer-token check of every route that reaches the models."""

from __future__ import annotations

import asyncio
import hmac
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from pmc2.serving.batching import MicroBatcher
from pmc2.edge_server.cloud_link import CloudLink, CloudReply
from pmc2.edge_server.config import EdgeConfig
from pmc2.edge_server.protection import EdgeProtector, ProtectedBatch
from pmc2.runtime.link_codecs import LinkCodec
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.protection import UnknownProtector, bundle_protectors, protector_named
from pmc2.runtime.secrets import fetch_secret
from pmc2.runtime.wire_format import EncodedBatch
from pmc2.serving.http_common import RequestRejected

IMAGE_TYPES = ("image/jpeg", "image/png")
MODEL_SIZE = (32, 32)
EDGE_MODELS = ("g_a", "g_s")  # and the model of every protector the bundle holds (runtime.protection)


@dataclass
class ImageResult:
    label: int
    s2_bytes: float  # a batch-wide stream's bytes are shared equally by its images
    batch_size: int
    timings_ms: dict[str, float]


class EdgeState:
    """Everything a running edge holds: models, the worker thread, the cloud link, one batcher per protector
    and codec."""

    def __init__(self, config: EdgeConfig, bundle: ModelBundle) -> None:
        self.config = config
        self.class_names = bundle.class_names
        self.protection = EdgeProtector(bundle, config.sessions, config.jpeg_quality, config.webp_quality)
        # One worker: the ORT sessions already use every CPU the process has.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-ort")
        self.cloud = CloudLink(config.cloud_url, config.cloud_ca, config.cloud_client_cert,
                               config.cloud_timeout_s, config.cloud_connect_retries)
        self.batchers = {
            (protector, name): MicroBatcher(self._processor(protector, codec), config.max_batch_size,
                                            config.max_wait_ms, config.max_queued_images)
            for protector in self.protection.protectors for name, codec in self.protection.codecs.items()
        }

    def served_protector(self, name: str) -> str:
        """``name`` if this edge serves that protector; UnknownProtector (answered 400) otherwise."""
        if name not in self.protection.protectors:
            protector_named(name)
            raise UnknownProtector(f"this edge's model bundle has no model for protector {name!r}; "
                                   f"it serves {', '.join(self.protection.protectors)}")
        return name

    def _processor(self, protector: str, codec: LinkCodec):
        async def process(images) -> list[ImageResult]:
            loop = asyncio.get_running_loop()
            protected = await loop.run_in_executor(self.executor, self.protection.protect, images, codec.name, protector)
            reply = await self.cloud.classify(EncodedBatch(codec.name, protected.payloads, len(images)))
            timings = stage_timings(protected, reply)
            sizes = [len(payload) for payload in protected.payloads]
            if codec.one_stream:  # the batch's stream is shared equally by its images
                sizes = [sizes[0] / len(images)] * len(images)
            return [ImageResult(label, size, len(images), timings) for label, size in zip(reply.labels, sizes, strict=True)]

        return process

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
        await self.cloud.close()
        self.executor.shutdown(wait=True)


def open_edge_bundle(config: EdgeConfig) -> ModelBundle:
    """The edge's models, decrypted with the data hub's key when configured; every file the edge
    uses is checked against the manifest's sha256 (ModelIntegrityError otherwise), and the configured
    protector must be among the bundle's (UnknownProtector otherwise)."""
    key = fetch_secret(config.model_key_uri) if config.model_key_uri else None
    bundle = ModelBundle.open(config.models, model_key=key)
    if config.protector not in bundle_protectors(bundle):
        raise UnknownProtector(f"the edge's protector {config.protector!r} has no model in {config.models}; "
                               f"it holds {', '.join(bundle_protectors(bundle))}")
    for name in (*EDGE_MODELS, *(protector_named(p).model for p in bundle_protectors(bundle))):
        bundle.model_bytes(name)
    bundle.entropy_tables()
    return bundle


def stage_timings(protected: ProtectedBatch, reply: CloudReply) -> dict[str, float]:
    """The PMC² Fig. 4 stages from the edge's generation and compression onwards, in ms."""
    cloud = reply.timings_ms
    return {
        "generation": protected.generation_ms, "compression": protected.compression_ms,
        "network_edge_cloud": max(0.0, reply.round_trip_ms - cloud["total_cloud"]),
        "decompression": cloud["decompression"], "recognition": cloud["recognition"],
        "other_cloud": cloud["other_cloud"],
    }


STATE = web.AppKey("state", EdgeState)
CONFIG = web.AppKey("config", EdgeConfig)


def require_token(request: web.Request, config: EdgeConfig) -> None:
    """Every route that reaches the models calls this first (unless the edge runs without auth, dev only)."""
    if config.allow_unauthenticated:
        return
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), config.token.encode()):
        raise RequestRejected(401, "missing or wrong bearer token")

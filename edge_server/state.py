"""What a running edge holds (models, worker thread, cloud link, one micro-batcher per protector and link
codec, or per split protector), and the bearer-token check of every route that reaches the models."""

from __future__ import annotations

import asyncio
import hmac
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from pmc2.serving.batching import MicroBatcher
from pmc2.edge_server.cloud_link import CloudLink, CloudReply
from pmc2.edge_server.config import EdgeConfig
from pmc2.runtime.compressors import compressor_named
from pmc2.runtime.edge_protection import EdgeProtector
from pmc2.runtime.link_codecs import UnknownCodec, codec_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.protection import UnknownProtector, bundle_protectors, protector_named, split_protector
from pmc2.runtime.secrets import fetch_secret
from pmc2.runtime.split_protection import SplitProtector
from pmc2.runtime.tensor_payload import to_npy
from pmc2.serving.http_common import RequestRejected

IMAGE_TYPES = ("image/jpeg", "image/png")
MODEL_SIZE = (32, 32)


@dataclass
class ImageResult:
    label: int
    s2_bytes: float  # a batch-wide stream's bytes are shared equally by its images
    batch_size: int
    timings_ms: dict[str, float]


class EdgeState:
    """Everything a running edge holds: models, the worker thread, the cloud link, one batcher per image protector
    and codec and one per split protector (its link: what it sends instead of a codec's payloads)."""

    def __init__(self, config: EdgeConfig, bundle: ModelBundle) -> None:
        self.config = config
        self.class_names = bundle.class_names
        self.protection = EdgeProtector(bundle, config.sessions, config.jpeg_quality, config.webp_quality)
        # One worker: the ORT sessions already use every CPU the process has.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-ort")
        self.cloud = CloudLink(config.cloud_url, config.cloud_ca, config.cloud_client_cert,
                               config.cloud_timeout_s, config.cloud_connect_retries,
                               {compressor: bundle.tables_sha256(compressor) for compressor in bundle.compressors})
        self.split: dict[str, SplitProtector] = {name: split_protector(name, bundle, "edge", config.sessions)
                                                 for name in bundle_protectors(bundle, "split")}
        processors = {(protector, codec): self._processor(protector, codec)
                      for protector in self.protection.protectors for codec in self.protection.links_of(protector)}
        processors.update({(name, split.link): self._split_processor(name, split) for name, split in self.split.items()})
        self.batchers = {key: MicroBatcher(process, config.max_batch_size, config.max_wait_ms, config.max_queued_images)
                         for key, process in processors.items()}
        self.links: dict[str, tuple[str, ...]] = {}  # protector -> what it can send the cloud
        for protector, link in self.batchers:
            self.links[protector] = (*self.links.get(protector, ()), link)

    def served_protector(self, name: str) -> str:
        """``name`` if this edge serves that protector; UnknownProtector (answered 400) otherwise."""
        if name not in self.links:
            protector_named(name)
            raise UnknownProtector(f"this edge's model bundle has no model for protector {name!r}; "
                                   f"it serves {', '.join(self.links)}")
        return name

    def route(self, protector: str | None, codec: str | None) -> tuple[str, str]:
        """The (protector, link) a request asks for, the configured ones where it names none; a link the
        protector cannot send is refused (UnknownCodec, answered 400)."""
        protector = self.served_protector(protector or self.config.protector)
        links = self.links[protector]
        if codec is None:
            return protector, self.config.codec if self.config.codec in links else links[0]
        if codec not in links:
            codec_named(codec)
            raise UnknownCodec(f"protector {protector!r} sends {', '.join(links)}, not {codec!r}")
        return protector, codec

    def _processor(self, protector: str, codec: str):
        async def process(images) -> list[ImageResult]:
            loop = asyncio.get_running_loop()
            protected = await loop.run_in_executor(self.executor, self.protection.protect, images, codec, protector)
            reply = await self.cloud.classify(protected.batch)
            timings = stage_timings(protected.generation_ms, protected.compression_ms, reply)
            sizes = [len(payload) for payload in protected.batch.payloads]
            if protected.batch.one_stream:  # the batch's stream is shared equally by its images
                sizes = [sizes[0] / len(images)] * len(images)
            return [ImageResult(label, size, len(images), timings) for label, size in zip(reply.labels, sizes, strict=True)]

        return process

    def _split_processor(self, name: str, split: SplitProtector):
        """A split protector's batch in chunks of its ``images_per_request``: each through its edge part (a fresh
        secret per chunk, kept here), the cloud's part and its finishing step."""
        async def chunk_results(images, batch_size: int) -> list[ImageResult]:
            loop = asyncio.get_running_loop()
            start = time.perf_counter()
            sent, secret = await loop.run_in_executor(self.executor, split.edge_part, images)
            generated = time.perf_counter()
            body = to_npy(sent)
            encoded = time.perf_counter()
            reply = await self.cloud.split(name, body, len(sent), split.cloud_output_shape)
            finish_start = time.perf_counter()
            labels = await loop.run_in_executor(self.executor, split.finish, reply.outputs, secret, len(images))
            finish_ms = 1e3 * (time.perf_counter() - finish_start)
            timings = stage_timings(1e3 * (generated - start), 1e3 * (encoded - generated), reply, finish_ms)
            return [ImageResult(int(label), len(body) / len(images), batch_size, timings) for label in labels]

        async def process(images) -> list[ImageResult]:
            size = split.images_per_request
            chunks = await asyncio.gather(*(chunk_results(images[start : start + size], len(images))
                                            for start in range(0, len(images), size)))
            return [result for chunk in chunks for result in chunk]

        return process

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
        await self.cloud.close()
        self.executor.shutdown(wait=True)


def open_edge_bundle(config: EdgeConfig) -> ModelBundle:
    """The edge's models, decrypted with the data hub's key when configured; every file the edge uses
    (``edge_models`` and each compressor's tables) is checked against the manifest's sha256 (ModelIntegrityError
    otherwise), and the configured protector must be among the bundle's (UnknownProtector otherwise)."""
    key = fetch_secret(config.model_key_uri) if config.model_key_uri else None
    bundle = ModelBundle.open(config.models, model_key=key)
    if config.protector not in bundle_protectors(bundle):
        raise UnknownProtector(f"the edge's protector {config.protector!r} has no model in {config.models}; "
                               f"it holds {', '.join(bundle_protectors(bundle))}")
    for name in edge_models(bundle):
        bundle.model_bytes(name)
    for compressor in bundle.compressors:
        bundle.entropy_tables(compressor)
    return bundle


def edge_models(bundle: ModelBundle) -> tuple[str, ...]:
    """The models an edge runs: each compressor's g_a and g_s, and each protector's edge models."""
    return (*(name for compressor in bundle.compressors for name in compressor_named(compressor).models),
            *(model for protector in bundle_protectors(bundle) for model in protector_named(protector).edge_models))


def stage_timings(generation_ms: float, compression_ms: float, reply: CloudReply,
                  edge_recognition_ms: float = 0.0) -> dict[str, float]:
    """The PMC² Fig. 4 stages from the edge's generation and compression onwards, in ms; a split protector's
    finishing step on the edge counts as recognition, beside the cloud's part."""
    cloud = reply.timings_ms
    return {
        "generation": generation_ms, "compression": compression_ms,
        "network_edge_cloud": max(0.0, reply.round_trip_ms - cloud["total_cloud"]),
        "decompression": cloud["decompression"], "recognition": cloud["recognition"] + edge_recognition_ms,
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

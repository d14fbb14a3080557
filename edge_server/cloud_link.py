"""The edge's one long-lived HTTPS session to the cloud: timeouts, retry on connection errors only.

    classify(EncodedBatch)        ──POST /v1/classify (application/x-pmc2; a batch of latents: X-PMC2-Tables)──▶ labels
    split(protector, .npy body)   ──POST /v1/split/<protector> (application/x-npy)──▶ a split protector's cloud outputs
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import aiohttp
import numpy as np

from pmc2.runtime.compressors import TABLES_HEADER
from pmc2.runtime.link_codecs import codec_named
from pmc2.runtime.split_protection import SPLIT_ROUTE
from pmc2.runtime.tensor_payload import CONTENT_TYPE as NPY, TensorPayloadError, from_npy
from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
from pmc2.serving.http_common import parse_server_timing
from pmc2.serving.tls import client_context


class CloudError(RuntimeError):
    """The cloud could not answer; ``http_status`` is what the edge returns (502 or 504)."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status


@dataclass
class CloudReply:
    labels: list[int]
    timings_ms: dict[str, float]
    round_trip_ms: float
    outputs: np.ndarray | None = None  # a split protector's: the cloud part's outputs


class CloudLink:
    """``tables``: the sha256 of each compressor's entropy tables, sent with every batch of latents so that a cloud
    on another model bundle refuses it (409) instead of decoding other latents."""

    def __init__(self, url: str, ca, client_cert, timeout_s: float, connect_retries: int,
                 tables: Mapping[str, str]) -> None:
        ssl_context = client_context(ca, client_cert, client_cert) if ca else True
        self.url = url.rstrip("/")
        self.connect_retries, self.tables = connect_retries, dict(tables)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=64),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    async def classify(self, batch: EncodedBatch) -> CloudReply:
        async def read(response: aiohttp.ClientResponse) -> CloudReply:
            reply = await response.json(content_type=None)
            return CloudReply(reply["labels"], reply["timings_ms"], 0.0)

        coded_with = {} if codec_named(batch.codec).carries_pixels else {TABLES_HEADER: self.tables[batch.compressor]}
        return await self._post("/v1/classify", batch.to_bytes(), CONTENT_TYPE, read, coded_with)

    async def split(self, protector: str, body: bytes, count: int, output_shape: tuple[int, ...]) -> CloudReply:
        """Split protector ``protector``'s cloud outputs (each of ``output_shape``) for the ``count`` items in
        ``body`` (``runtime.tensor_payload``, float16 both ways)."""
        async def read(response: aiohttp.ClientResponse) -> CloudReply:
            outputs = from_npy(await response.read(), output_shape, count)
            if len(outputs) != count:
                raise TensorPayloadError(f"{len(outputs)} outputs for {count} items sent")
            return CloudReply([], parse_server_timing(response.headers.get("Server-Timing", "")), 0.0, outputs)

        return await self._post(SPLIT_ROUTE.format(protector=protector), body, NPY, read)

    async def _post(self, path: str, body: bytes, content_type: str,
                    read: Callable[[aiohttp.ClientResponse], Awaitable[CloudReply]],
                    headers: Mapping[str, str] = MappingProxyType({})) -> CloudReply:
        for attempt in range(self.connect_retries + 1):
            start = time.perf_counter()
            try:
                async with self.session.post(self.url + path, data=body,
                                             headers={"Content-Type": content_type, **headers}) as response:
                    if response.status != 200:
                        reply = await response.json(content_type=None)
                        raise CloudError(502, f"cloud answered {response.status}: {reply.get('error', reply)}")
                    reply = await read(response)
                reply.round_trip_ms = 1e3 * (time.perf_counter() - start)
                return reply
            except aiohttp.ClientConnectorError as error:  # nothing was sent: safe to retry
                if attempt == self.connect_retries:
                    raise CloudError(502, f"cloud unreachable: {error}") from error
                await asyncio.sleep(0.05 * 2**attempt)
            except asyncio.TimeoutError as error:
                raise CloudError(504, "cloud did not answer in time") from error
            except (aiohttp.ClientError, ValueError) as error:
                raise CloudError(502, f"bad answer from the cloud: {error}") from error
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self.session.close()

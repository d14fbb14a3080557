"""The edge's one long-lived HTTPS session to the cloud: timeouts, retry on connection errors only."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from pmc2.runtime.wire_format import CONTENT_TYPE, EncodedBatch
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


class CloudLink:
    def __init__(self, url: str, ca, client_cert, timeout_s: float, connect_retries: int) -> None:
        ssl_context = client_context(ca, client_cert, client_cert) if ca else True
        self.url = url.rstrip("/") + "/v1/classify"
        self.connect_retries = connect_retries
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=64),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    async def classify(self, batch: EncodedBatch) -> CloudReply:
        body = batch.to_bytes()
        for attempt in range(self.connect_retries + 1):
            start = time.perf_counter()
            try:
                async with self.session.post(self.url, data=body, headers={"Content-Type": CONTENT_TYPE}) as response:
                    reply = await response.json(content_type=None)
                    if response.status != 200:
                        raise CloudError(502, f"cloud answered {response.status}: {reply.get('error', reply)}")
                    return CloudReply(reply["labels"], reply["timings_ms"], 1e3 * (time.perf_counter() - start))
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

"""Real aiohttp servers on loopback with real TLS, for the server tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from pmc2.serving.local_stack import free_port

from pmc2.serving.tls import server_context


@dataclass
class RunningServer:
    url: str
    runner: web.AppRunner


@asynccontextmanager
async def serve_tls(app: web.Application, certificate, client_ca=None, port: int | None = None,
                    shutdown_timeout: float = 5.0) -> AsyncIterator[RunningServer]:
    """Serve ``app`` over HTTPS on 127.0.0.1 (``localhost`` in the URL, as in the certificates)."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    port = port or free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(certificate, certificate, client_ca))
    await site.start()
    try:
        yield RunningServer(f"https://localhost:{port}", runner)
    finally:
        await runner.cleanup()


def recording_middleware(bodies: list[bytes]):
    """Keeps a copy of every request body the server receives."""

    @web.middleware
    async def record(request: web.Request, handler):
        bodies.append(await request.read())
        return await handler(request)

    return record


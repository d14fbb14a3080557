"""JSON error handling, health/readiness routes and Prometheus metrics for an aiohttp app."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pmc2.runtime.compressors import TablesMismatch, UnknownCompressor
from pmc2.runtime.image_decoding import ImageError
from pmc2.runtime.link_codecs import CorruptBitstream, UnknownCodec
from pmc2.runtime.protection import UnknownProtector
from pmc2.runtime.tensor_payload import TensorPayloadError
from pmc2.runtime.wire_format import WireFormatError
from pmc2.serving.rate_limit import OverBurst, RateLimited

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ServiceMetrics:
    """Request counts, latency histogram and bytes received, in a registry of the app's own."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(f"{service}_requests", "HTTP requests", ["path", "status"], registry=self.registry)
        self.latency = Histogram(
            f"{service}_request_seconds", "request latency", ["path"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.bytes_received = Counter(f"{service}_received_bytes", "request body bytes", registry=self.registry)
        self.images = Counter(f"{service}_images", "images processed", registry=self.registry)
        # Images queued or in a batch not yet answered: the autoscaler's Pods metric (deploy/k8s/base/autoscaling.yaml).
        self.outstanding = Gauge(f"{service}_outstanding_images", "images waiting or being processed",
                                 registry=self.registry)


def server_timing(timings: dict[str, float]) -> str:
    """A Server-Timing header value: ``name;dur=ms`` per stage."""
    return ", ".join(f"{name};dur={value:.3f}" for name, value in timings.items())


def parse_server_timing(header: str) -> dict[str, float]:
    """``server_timing``'s inverse (stages without a duration are left out)."""
    timings = {}
    for entry in filter(None, (part.strip() for part in header.split(","))):
        name, _, duration = entry.partition(";dur=")
        if duration:
            timings[name] = float(duration)
    return timings


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


class RequestRejected(Exception):
    """Raised by request handling with the status to answer (the middleware sends ``message`` as JSON)."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status


# Exception type → HTTP status, for every error a request can cause (the first match along the type's MRO).
# An exception that carries its own ``http_status`` (RequestRejected, the edge's CloudError) answers that.
ERROR_STATUS: dict[type[Exception], int] = {
    WireFormatError: 400,
    UnknownCodec: 400,
    UnknownProtector: 400,
    UnknownCompressor: 400,
    TensorPayloadError: 400,
    ImageError: 422,
    CorruptBitstream: 422,
    TablesMismatch: 409,
    OverBurst: 413,
    RateLimited: 429,  # with Retry-After
}


def status_of(error: Exception) -> int | None:
    """The status a handler's exception answers with, or None for a bug (answered 500)."""
    if isinstance(getattr(error, "http_status", None), int):
        return error.http_status
    return next((ERROR_STATUS[kind] for kind in type(error).__mro__ if kind in ERROR_STATUS), None)


async def read_body(request: web.Request, allowed_types: tuple[str, ...]) -> bytes:
    """The request body, after checking its Content-Type and that it is not empty (counted in metrics)."""
    if request.content_type not in allowed_types:
        raise RequestRejected(415, f"Content-Type must be one of {', '.join(allowed_types)}, "
                                   f"got {request.content_type or 'none'}")
    body = await request.read()
    request.app[METRICS].bytes_received.inc(len(body))
    if not body:
        raise RequestRejected(400, "empty request body")
    return body


def error_and_metrics_middleware(metrics: ServiceMetrics):
    """Every failure becomes a JSON body; every request is counted and timed."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        path = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        try:
            response = await handler(request)
        except web.HTTPException as error:
            if error.content_type == "application/json":
                response = error
            else:
                response = json_error(error.status, error.reason if error.status != 413 else error.text)
        except Exception as error:
            status = status_of(error)
            if status is None:  # a bug must not take the service down; log it and answer 500
                log.exception("unhandled error on %s", request.path)
                response = json_error(500, "internal server error")
            else:
                response = json_error(status, str(error))
                if getattr(error, "retry_after_s", None):
                    response.headers["Retry-After"] = str(error.retry_after_s)
        metrics.requests.labels(path, str(response.status)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - start)
        return response

    return middleware


METRICS = web.AppKey("metrics", ServiceMetrics)
DRAINING = web.AppKey("draining", threading.Event)


def service_app(service: str, max_body_bytes: int, ready_key: web.AppKey) -> web.Application:
    """An app with JSON errors, request metrics, /healthz, /metrics and a /readyz that turns ready once
    ``ready_key`` is set (by the app's cleanup context, after its models load) and unready on shutdown."""
    metrics = ServiceMetrics(service)
    app = web.Application(client_max_size=max_body_bytes, middlewares=[error_and_metrics_middleware(metrics)])
    app[METRICS] = metrics
    app[DRAINING] = draining = threading.Event()

    async def drain(_: web.Application) -> None:  # shutting down: unready while in-flight requests finish
        draining.set()

    app.on_shutdown.append(drain)
    add_health_routes(app, metrics, ready=lambda: ready_key in app and not draining.is_set())
    return app


def add_health_routes(app: web.Application, metrics: ServiceMetrics, ready: Callable[[], bool]) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"ready": True}) if ready() else json_error(503, "not ready")

    async def prometheus(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)

"""Command-line pieces shared by the two servers: listen address, TLS files, ORT threads, micro-batching."""

from __future__ import annotations

import argparse
import logging
from dataclasses import fields
from pathlib import Path

from aiohttp import web

from pmc2.runtime.sessions import SessionSettings
from pmc2.serving.tls import server_context
from pmc2.value_ranges import non_negative_float, port_number, positive_int


def add_server_arguments(parser: argparse.ArgumentParser, default_port: int, cert_required: bool = True) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=default_port)
    parser.add_argument("--cert", type=Path, required=cert_required, help="PEM with this server's key and certificate")
    parser.add_argument("--client-ca", type=Path, default=None, help="require client certificates signed by this CA")
    parser.add_argument("--models", type=Path, default=None, help="onnx_models folder (default: the shipped one)")
    parser.add_argument("--threads", type=positive_int, default=None, help="ORT intra-op threads (default: CPUs available)")
    parser.add_argument("--shutdown-timeout", type=non_negative_float, default=10.0, help="seconds to finish in-flight requests")


BATCHING_SETTINGS = ("max_batch_size", "max_wait_ms", "max_queued_images")


def add_batching_arguments(parser: argparse.ArgumentParser, config_class: type, queued_per: str) -> None:
    """--max-batch-size, --max-wait-ms, --max-queued-images, defaulting to the server's config dataclass's fields of
    those names."""
    defaults = {field.name: field.default for field in fields(config_class) if field.name in BATCHING_SETTINGS}
    parser.add_argument("--max-batch-size", type=positive_int, default=defaults["max_batch_size"],
                        help="micro-batching: most images per model call")
    parser.add_argument("--max-wait-ms", type=non_negative_float, default=defaults["max_wait_ms"],
                        help="micro-batching: longest an image waits for company while a batch runs")
    parser.add_argument("--max-queued-images", type=positive_int, default=defaults["max_queued_images"],
                        help=f"outstanding images{queued_per} before answering 503 with Retry-After")


def batching_settings(args: argparse.Namespace) -> dict[str, int | float]:
    """The parsed micro-batching settings, as keyword arguments of either server's config."""
    return {name: getattr(args, name) for name in BATCHING_SETTINGS}


def session_settings(args: argparse.Namespace) -> SessionSettings:
    return SessionSettings(intra_op_threads=args.threads)


def serve(app: web.Application, args: argparse.Namespace) -> None:
    """Run until SIGINT/SIGTERM, then let in-flight requests finish (graceful shutdown)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ssl_context = server_context(args.cert, args.cert, args.client_ca)
    web.run_app(app, host=args.host, port=args.port, ssl_context=ssl_context,
                shutdown_timeout=args.shutdown_timeout, access_log=None)

"""python -m pmc2.edge_server --cert edge.pem --cloud-url https://cloud:8443 --cloud-ca ca.pem"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from pmc2.edge_server.app import create_app
from pmc2.edge_server.config import EdgeConfig
from pmc2.serving.cli import add_server_arguments, serve, session_settings


def main() -> None:
    defaults = EdgeConfig()
    parser = argparse.ArgumentParser(description="PMC² secure edge server (HTTPS)")
    add_server_arguments(parser, default_port=9443)
    parser.add_argument("--cloud-url", default=defaults.cloud_url)
    parser.add_argument("--cloud-ca", type=Path, default=None, help="CA of the cloud's certificate")
    parser.add_argument("--cloud-client-cert", type=Path, default=None, help="PEM for mutual TLS to the cloud")
    parser.add_argument("--token-env", default="PMC2_EDGE_TOKEN", help="environment variable holding the bearer token")
    parser.add_argument("--codec", choices=("neural", "png", "jpeg"), default=defaults.codec)
    parser.add_argument("--jpeg-quality", type=int, default=defaults.jpeg_quality)
    parser.add_argument("--resize-policy", choices=("resize", "reject"), default=defaults.resize_policy)
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms)
    parser.add_argument("--cloud-timeout", type=float, default=defaults.cloud_timeout_s)
    args = parser.parse_args()
    config = EdgeConfig(
        cloud_url=args.cloud_url, cloud_ca=args.cloud_ca, cloud_client_cert=args.cloud_client_cert,
        token=os.environ.get(args.token_env), codec=args.codec, jpeg_quality=args.jpeg_quality,
        resize_policy=args.resize_policy, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
        cloud_timeout_s=args.cloud_timeout, sessions=session_settings(args),
    )
    if args.models:
        config = replace(config, models=args.models)
    serve(create_app(config), args)


if __name__ == "__main__":
    main()

"""python -m pmc2.cloud_server --cert cloud.pem [--client-ca ca.pem]"""

from __future__ import annotations

import argparse
from dataclasses import replace

from pmc2.cloud_server.app import create_app
from pmc2.cloud_server.config import CloudConfig
from pmc2.serving.cli import add_batching_arguments, add_server_arguments, batching_settings, serve, session_settings
from pmc2.value_ranges import positive_float, positive_int


def main() -> None:
    parser = argparse.ArgumentParser(description="PMC² cloud server (HTTPS)")
    add_server_arguments(parser, default_port=8443)
    parser.add_argument("--max-batch-images", type=positive_int, default=CloudConfig.max_batch_images,
                        help="most images one request may carry")
    add_batching_arguments(parser, CloudConfig, queued_per=" per endpoint (classify, each split protector)")
    parser.add_argument("--client-images-per-s", type=positive_float, default=None,
                        help="rate limit per client (TLS certificate subject, else address) on /v1/classify, in "
                             "images/s; beyond it 429 with Retry-After (default: no limit)")
    parser.add_argument("--client-burst-images", type=positive_int, default=CloudConfig.client_burst_images,
                        help="the most images a client may send at once under --client-images-per-s")
    args = parser.parse_args()
    config = CloudConfig(max_batch_images=args.max_batch_images, **batching_settings(args),
                         client_images_per_s=args.client_images_per_s, client_burst_images=args.client_burst_images,
                         sessions=session_settings(args))
    if args.models:
        config = replace(config, models=args.models)
    serve(create_app(config), args)


if __name__ == "__main__":
    main()

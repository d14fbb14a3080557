"""python -m pmc2.edge_server --cert edge.pem --cloud-url https://cloud:8443 --cloud-ca ca.pem"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

from pmc2.edge_server.app import create_app, open_edge_bundle
from pmc2.edge_server.config import EdgeConfig
from pmc2.runtime.image_decoding import RESIZE_POLICIES
from pmc2.runtime.link_codecs import LINK_CODECS
from pmc2.runtime.model_bundle import ModelIntegrityError
from pmc2.runtime.protection import PROTECTORS
from pmc2.runtime.secrets import SecretUnavailable, fetch_secret, materialize_secret
from pmc2.serving.cli import add_batching_arguments, add_server_arguments, batching_settings, serve, session_settings
from pmc2.value_ranges import jpeg_quality, positive_float, webp_quality


def fetch_tls_files(args: argparse.Namespace) -> argparse.Namespace:
    """Replace the --*-uri options by private files holding what the data hub released."""
    secrets_dir = Path(tempfile.mkdtemp(prefix="pmc2-secrets-"))
    if args.cert_uri:
        args.cert = materialize_secret(args.cert_uri, secrets_dir, "edge.pem")
    if args.cloud_client_cert_uri:
        args.cloud_client_cert = materialize_secret(args.cloud_client_cert_uri, secrets_dir, "edge-client.pem")
    if args.cloud_ca_uri:
        args.cloud_ca = materialize_secret(args.cloud_ca_uri, secrets_dir, "cloud-ca.pem")
    return args


def bearer_token(args: argparse.Namespace) -> str:
    """The token from --token-uri or the --token-env variable; an edge never starts without one by accident."""
    token = fetch_secret(args.token_uri).decode().strip() if args.token_uri else os.environ.get(args.token_env, "")
    if not token:
        raise ValueError(f"no bearer token: set {args.token_env} or --token-uri "
                         "(or, for development only, pass --insecure-dev-no-auth)")
    return token


def main() -> None:
    defaults = EdgeConfig  # the dataclass holds its field defaults
    parser = argparse.ArgumentParser(description="PMC² secure edge server (HTTPS)")
    add_server_arguments(parser, default_port=9443, cert_required=False)
    parser.add_argument("--cloud-url", default=defaults.cloud_url)
    parser.add_argument("--cloud-ca", type=Path, default=None, help="CA of the cloud's certificate")
    parser.add_argument("--cloud-client-cert", type=Path, default=None, help="PEM for mutual TLS to the cloud")
    parser.add_argument("--token-env", default="PMC2_EDGE_TOKEN", help="environment variable holding the bearer token")
    parser.add_argument("--codec", choices=tuple(LINK_CODECS), default=defaults.codec)
    parser.add_argument("--protector", choices=tuple(PROTECTORS), default=defaults.protector,
                        help="what protects each image unless a request asks for another (?protector=)")
    parser.add_argument("--jpeg-quality", type=jpeg_quality, default=defaults.jpeg_quality)
    parser.add_argument("--webp-quality", type=webp_quality, default=defaults.webp_quality, help="lossy WebP (default: lossless)")
    parser.add_argument("--resize-policy", choices=RESIZE_POLICIES, default=defaults.resize_policy)
    add_batching_arguments(parser, defaults, queued_per=" per link codec")
    parser.add_argument("--cloud-timeout", type=positive_float, default=defaults.cloud_timeout_s)
    parser.add_argument("--model-key-uri", default=None, help="kbs:///repo/type/tag, file:///path or env://VAR")
    parser.add_argument("--cert-uri", default=None, help="fetch the server PEM from here instead of --cert")
    parser.add_argument("--cloud-client-cert-uri", default=None, help="fetch the mutual-TLS PEM from here")
    parser.add_argument("--cloud-ca-uri", default=None, help="fetch the cloud's CA from here")
    parser.add_argument("--token-uri", default=None, help="fetch the bearer token from here instead of --token-env")
    parser.add_argument("--insecure-dev-no-auth", action="store_true",
                        help="DEVELOPMENT ONLY: serve every caller without a bearer token")
    args = parser.parse_args()
    try:
        args = fetch_tls_files(args)
        if args.cert is None:
            parser.error("give --cert or --cert-uri")
        config = EdgeConfig(
            cloud_url=args.cloud_url, cloud_ca=args.cloud_ca, cloud_client_cert=args.cloud_client_cert,
            token=None if args.insecure_dev_no_auth else bearer_token(args),
            allow_unauthenticated=args.insecure_dev_no_auth,
            codec=args.codec, protector=args.protector, jpeg_quality=args.jpeg_quality, webp_quality=args.webp_quality,
            resize_policy=args.resize_policy, **batching_settings(args),
            cloud_timeout_s=args.cloud_timeout, model_key_uri=args.model_key_uri, sessions=session_settings(args),
            **({"models": args.models} if args.models else {}),
        )
        bundle = open_edge_bundle(config)
    except (ModelIntegrityError, SecretUnavailable, FileNotFoundError, ValueError) as error:
        raise SystemExit(f"pmc2 edge: refusing to start: {error}") from None
    if config.allow_unauthenticated:
        logging.getLogger("pmc2.edge").warning("INSECURE: --insecure-dev-no-auth: this edge serves ANY caller "
                                               "without a bearer token; never use it outside development")
    serve(create_app(config, bundle), args)


if __name__ == "__main__":
    main()

"""End-to-end demo: cloud + edge on localhost (HTTPS, mutual TLS edge→cloud), the simulated phone
over the bundled images in every mode, protector and edge→cloud codec, one table, clean shutdown.

    python -m pmc2.demo [--images sample] [--limit N] [--protectors perturbation,dapter] [--json out.json] [--serve]

With ``--serve`` the demo then keeps a cloud and an edge running, prints the address of the edge's page
(token included) and waits for Ctrl-C (SIGTERM or SIGHUP stop both servers too).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pmc2.mobile_client.image_sources import load_images
from pmc2.mobile_client.run import format_accuracy_by_class, format_summaries, run_all_modes
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY
from pmc2.runtime.protection import PROTECTORS, protector_named
from pmc2.serving.local_stack import local_stack
from pmc2.value_ranges import jpeg_quality, port_number, positive_int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=None, help="'sample' (default), a CIFAR-10 folder, an .npz or an image folder")
    parser.add_argument("--limit", type=positive_int, default=None)
    parser.add_argument("--concurrency", type=positive_int, default=1)
    parser.add_argument("--jpeg-quality", type=jpeg_quality, default=PHONE_JPEG_QUALITY, help="phone-side JPEG quality (S1)")
    parser.add_argument("--protectors", default=None,
                        help=f"comma-separated, of {', '.join(PROTECTORS)} (default: every one the bundle holds)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--serve", action="store_true", help="afterwards, keep the servers up for the page until Ctrl-C")
    parser.add_argument("--port", type=port_number, default=9443, help="the edge's port with --serve")
    args = parser.parse_args()
    data = load_images(args.images)
    if args.limit:
        data = data.subset(slice(0, args.limit))
    protectors = None
    if args.protectors:
        try:
            protectors = tuple(protector_named(name.strip()).name for name in args.protectors.split(","))
        except ValueError as error:
            parser.error(str(error))
    summaries = run_all_modes(data, args.concurrency, args.jpeg_quality, protectors)
    print(f"{len(data)} images, one request each, concurrency {args.concurrency}")
    print(format_summaries(summaries))
    print("\n" + format_accuracy_by_class(summaries))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2) + "\n")
    if args.serve:
        serve_page(args.port)
    else:
        print(f"\nTo look at what leaves the trusted domain in a browser: make demo ARGS=--serve "
              f"(then open https://localhost:{args.port}/ui)")


def serve_page(port: int) -> None:
    """Keep a local cloud + edge up and print the page's address until Ctrl-C, SIGTERM or SIGHUP."""
    workdir = Path(".demo")
    workdir.mkdir(exist_ok=True)
    with local_stack(workdir, edge_port=port) as stack:
        print(f"\nThe edge's page: {stack.edge_url}/ui#token={stack.token}")
        print(f"(a development CA signed its certificate: trust {stack.certificates.ca.resolve()} in the browser, "
              "or accept its warning) — Ctrl-C stops both servers")
        try:
            while all(stack.alive().values()):
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

"""Mobile-client simulator: python -m pmc2.mobile_client --mode pmc2 --edge-url https://localhost:9443 ..."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pmc2.mobile_client.image_sources import load_images
from pmc2.mobile_client.modes import MODES, Phone
from pmc2.mobile_client.run import format_accuracy_by_class, format_summaries, run_mode, run_name, summarize
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.link_codecs import DEFAULT_CODEC, LINK_CODECS
from pmc2.runtime.protection import DEFAULT_PROTECTOR, PROTECTORS
from pmc2.serving.tls import client_context
from pmc2.value_ranges import jpeg_quality, positive_float, positive_int


def main() -> None:
    parser = argparse.ArgumentParser(description="Simulated phone for PMC² (HTTPS)")
    parser.add_argument("--mode", choices=MODES, default="pmc2")
    parser.add_argument("--images", default=None, help="'sample' (default), a CIFAR-10 folder, an .npz, or an image folder")
    parser.add_argument("--limit", type=positive_int, default=None)
    parser.add_argument("--repeat", type=positive_int, default=1, help="send the image set this many times (load tests)")
    parser.add_argument("--edge-url", default="https://localhost:9443")
    parser.add_argument("--cloud-url", default="https://localhost:8443")
    parser.add_argument("--ca", type=Path, required=True, help="CA that signed the servers' certificates")
    parser.add_argument("--token-env", default="PMC2_EDGE_TOKEN")
    parser.add_argument("--edge-codec", choices=tuple(LINK_CODECS), default=None,
                        help=f"edge→cloud link (default: the edge's; {DEFAULT_CODEC} for an image protector)")
    parser.add_argument("--protector", choices=tuple(PROTECTORS), default=DEFAULT_PROTECTOR,
                        help="what protects the image: run by the edge (pmc2) or by the phone (pp-baseline)")
    parser.add_argument("--jpeg-quality", type=jpeg_quality, default=PHONE_JPEG_QUALITY, help="JPEG quality on the phone (S1)")
    parser.add_argument("--concurrency", type=positive_int, default=1)
    parser.add_argument("--rate", type=positive_float, default=None, help="requests started per second (default: unlimited)")
    parser.add_argument("--json", type=Path, default=None, help="write per-image records and the summary here")
    args = parser.parse_args()
    data = load_images(args.images)
    if args.limit:
        data = data.subset(slice(0, args.limit))
    if args.repeat > 1:
        data = data.subset(np.tile(np.arange(len(data)), args.repeat))
    phone = Phone(args.edge_url, args.cloud_url, os.environ.get(args.token_env), args.jpeg_quality, args.edge_codec,
                  ModelBundle.open() if args.mode == "pp-baseline" else None, protector=args.protector)
    records = asyncio.run(run_mode(phone, args.mode, data, client_context(args.ca), args.concurrency, args.rate))
    summary = summarize(records)
    rows = {run_name(args.mode, args.edge_codec if args.mode == "pmc2" else None, args.protector): summary}
    print(format_summaries(rows))
    print("\n" + format_accuracy_by_class(rows))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "records": [asdict(r) for r in records]}, indent=1))


if __name__ == "__main__":
    main()

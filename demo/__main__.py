"""End-to-end demo: cloud + edge on localhost (HTTPS, mutual TLS edge→cloud), the simulated phone
over the bundled images in every mode and edge→cloud codec, one table, clean shutdown.

    python -m pmc2.demo [--images sample] [--limit N] [--concurrency 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pmc2.mobile_client.image_sources import load_images
from pmc2.mobile_client.run import format_accuracy_by_class, format_summaries, run_all_modes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=None, help="'sample' (default), a CIFAR-10 folder, an .npz or an image folder")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--jpeg-quality", type=int, default=90, help="phone-side JPEG quality (S1)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = load_images(args.images)
    if args.limit:
        data = data.subset(slice(0, args.limit))
    summaries = run_all_modes(data, args.concurrency, args.jpeg_quality)
    print(f"{len(data)} images, one request each, concurrency {args.concurrency}")
    print(format_summaries(summaries))
    print(format_accuracy_by_class(summaries))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2) + "\n")


if __name__ == "__main__":
    main()

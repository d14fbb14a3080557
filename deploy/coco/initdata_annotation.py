"""Turn deploy/coco/initdata.toml into the pod annotation value (gzip, then base64), or check one.

    python deploy/coco/initdata_annotation.py                      # print the value
    python deploy/coco/initdata_annotation.py --write              # update deploy/k8s/base/edge.yaml
"""

from __future__ import annotations

import argparse
import base64
import gzip
import re
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
INITDATA = HERE / "initdata.toml"
EDGE_MANIFEST = HERE.parent / "k8s" / "base" / "edge.yaml"
ANNOTATION = "io.katacontainers.config.runtime.cc_init_data"


def annotation_value(initdata: Path = INITDATA) -> str:
    text = initdata.read_bytes()
    parsed = tomllib.loads(text.decode())
    if parsed.get("version") != "0.1.0" or parsed.get("algorithm") not in ("sha256", "sha384", "sha512"):
        raise ValueError(f"{initdata}: initdata needs version 0.1.0 and a sha256/384/512 algorithm")
    if not {"aa.toml", "cdh.toml"} <= set(parsed.get("data", {})):
        raise ValueError(f"{initdata}: [data] must hold aa.toml and cdh.toml")
    return base64.b64encode(gzip.compress(text, mtime=0)).decode()


def write_annotation(manifest: Path = EDGE_MANIFEST) -> None:
    pattern = re.compile(rf"({re.escape(ANNOTATION)}: )\"[^\"]*\"")
    text = manifest.read_text()
    if not pattern.search(text):
        raise ValueError(f"{manifest} has no {ANNOTATION} annotation to update")
    manifest.write_text(pattern.sub(lambda match: f'{match.group(1)}"{annotation_value()}"', text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update the annotation in {EDGE_MANIFEST.name}")
    args = parser.parse_args()
    if args.write:
        write_annotation()
    else:
        print(annotation_value())


if __name__ == "__main__":
    main()

"""The edge and cloud images through the phone: the demo, the images' sizes, and the containers measured.

    python -m pmc2.bench.containers demo [--limit N] [--protectors …] [--encrypted] [--json out.json]   (make demo-containers)
    python -m pmc2.bench.containers sizes                             → reports/deploy/images.json
    python -m pmc2.bench.containers measure [--requests 3000]         → reports/deploy/containers.{json,md} (and images.json)

``demo`` is ``make demo`` with the servers in containers (``bench.container_stack``: TLS, bearer token, the edge
verifying the cloud with mutual TLS, secrets from the data-hub stand-in, non-root, read-only root and models,
the manifests' memory limits): every run of ``mobile_client.run.runs`` (each protector over each link, the
phone-side baseline, unprotected) on the bundled images, one table.

``sizes``: each image's uncompressed size (podman's, the sum of its layers) and compressed size (its layers
gzip-compressed as a registry push sends them, ``podman save --format docker-dir --compress``).

``measure`` (run it on an otherwise idle machine): cold start (``podman run`` → first 200 from /readyz, median of
``--cold-starts``, the image already in local storage; the cloud alone, then the edge with the cloud up); the
servers' resident memory once ready (idle, VmRSS) and at its peak after the load (VmHWM); served images/s of the
phone's pmc2 mode (neural link, the default protector) at concurrency 64, through the containers and through the
same servers as host processes (``serving.local_stack``, the same threads and mutual TLS), alternating,
``--rounds`` each; and every demo run through both, whose accuracy, bytes and errors must agree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pmc2.bench.container_stack import MODEL_KEY, container_stack, image_id, podman, process_memory_mib
from pmc2.machine import cpu_model
from pmc2.mobile_client.image_sources import load_images
from pmc2.mobile_client.modes import Phone
from pmc2.mobile_client.run import format_accuracy_by_class, format_summaries, run_all_modes, run_mode, run_name, runs, summarize
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY
from pmc2.runtime.link_codecs import DEFAULT_CODEC
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.paths import REPORTS
from pmc2.runtime.protection import DEFAULT_PROTECTOR, PROTECTORS, bundle_protectors, protector_named
from pmc2.serving.local_stack import local_stack
from pmc2.value_ranges import jpeg_quality, positive_int

OUT = REPORTS / "deploy"
IMAGES = {"edge": "localhost/pmc2-edge", "cloud": "localhost/pmc2-cloud", "edge-encrypted": "localhost/pmc2-edge-encrypted"}
LOAD_CONCURRENCY = 64
THREADS = 1  # ORT threads per server, in the containers and on the host alike (two servers on a 2-core machine)


def run_every_link(stack, data: LabelledImages, concurrency: int = 1, phone_quality: int = PHONE_JPEG_QUALITY,
                   protectors: tuple[str, ...] | None = None) -> dict[str, dict]:
    """``make demo``'s runs against a running ``stack`` (its URLs, token and TLS): a summary per run."""
    bundle = ModelBundle.open()
    summaries = {}
    for mode, codec, protector in runs(bundle, protectors or bundle_protectors(bundle)):
        phone = Phone(stack.edge_url, stack.cloud_url, stack.token, phone_quality, codec, bundle, protector=protector)
        records = asyncio.run(run_mode(phone, mode, data, stack.client_ssl(), concurrency))
        summaries[run_name(mode, codec, protector)] = summarize(records)
    return summaries


# ---- sizes ----------------------------------------------------------------------------------------------------------

def image_sizes(names: tuple[str, ...]) -> dict[str, dict]:
    """Uncompressed and gzip-compressed bytes of each image ``make`` built, with its ID and base."""
    sizes = {}
    for name in names:
        identity = image_id(name)
        inspected = json.loads(podman("image", "inspect", identity))[0]
        with tempfile.TemporaryDirectory() as folder:
            saved = Path(folder) / "image"
            podman("save", "--quiet", "--format", "docker-dir", "--compress", "--output", str(saved), identity)
            manifest = json.loads((saved / "manifest.json").read_text())
        compressed = sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]
        sizes[name] = {
            "image": IMAGES[name], "id": identity, "base": inspected["Labels"].get("org.opencontainers.image.base.name"),
            "layers": len(manifest["layers"]), "uncompressed_bytes": inspected["Size"], "compressed_bytes": compressed,
            "uncompressed_mb": round(inspected["Size"] / 1e6, 1), "compressed_mb": round(compressed / 1e6, 1),
        }
    return sizes


def torch_absent(name: str) -> bool:
    """Whether the image ``name`` has no importable torch (checked by its own python)."""
    result = podman("run", "--rm", "--entrypoint", "python", image_id(name), "-c",
                    "import importlib.util; print(importlib.util.find_spec('torch') is None)")
    return result.splitlines()[-1] == "True"


def sizes_report(names: tuple[str, ...]) -> dict:
    return {"bundle_sha256": ModelBundle.open().sha256, "podman": podman("version", "--format", "{{.Client.Version}}"),
            "images": image_sizes(names), "torch_absent": {name: torch_absent(name) for name in names}}


# ---- measure --------------------------------------------------------------------------------------------------------

def _served(stack, data: LabelledImages, concurrency: int) -> dict:
    phone = Phone(stack.edge_url, stack.cloud_url, stack.token, PHONE_JPEG_QUALITY, DEFAULT_CODEC, protector=DEFAULT_PROTECTOR)
    start = time.perf_counter()
    records = asyncio.run(run_mode(phone, "pmc2", data, stack.client_ssl(), concurrency, progress=False))
    wall = time.perf_counter() - start
    summary = summarize(records)
    return {"requests": len(records), "errors": summary["errors"], "first_error": summary["first_error"],
            "images_per_s": (len(records) - summary["errors"]) / wall, "latency_p50_ms": summary["latency_p50_ms"],
            "latency_p99_ms": summary["latency_p99_ms"], "accuracy": summary["accuracy"]}


def cold_starts(workdir: Path, repeats: int) -> dict[str, list[float]]:
    """Seconds from ``podman run`` to the first ready /readyz: the cloud ``repeats`` times, then the edge."""
    seconds = {"cloud": [], "edge": []}
    with container_stack(workdir, threads=THREADS, start=False) as stack:
        for _ in range(repeats):
            started = stack.start_cloud()
            seconds["cloud"].append(started.ready_s)
            stack.remove(started.name)
        stack.start_cloud()
        stack.start_data_hub()
        for _ in range(repeats):
            started = stack.start_edge()
            seconds["edge"].append(started.ready_s)
            stack.stop(started.name)
            stack.remove(started.name)
    return seconds


def measure(requests: int, rounds: int, repeats: int, workdir: Path, limit: int | None = None) -> dict:
    data = load_evaluation(None)
    load = data.subset(np.resize(np.arange(len(data)), requests))
    warm_up = data.subset(slice(0, 200))
    starts = cold_starts(workdir / "cold", repeats)
    throughput: dict[str, list[dict]] = {"containers": [], "host": []}
    with container_stack(workdir / "containers", threads=THREADS) as containers:
        idle = {"edge": containers.memory_mib(containers.edge.name), "cloud": containers.memory_mib(containers.cloud.name)}
        with local_stack(workdir / "host", edge_threads=THREADS, cloud_threads=THREADS) as host:
            host_idle = {name: process_memory_mib(process.pid) for name, process in host.processes.items()}
            for stack in (containers, host):
                _served(stack, warm_up, 16)
            for _ in range(rounds):  # alternating, so that drift in the machine's speed hits both alike
                throughput["containers"].append(_served(containers, load, LOAD_CONCURRENCY))
                throughput["host"].append(_served(host, load, LOAD_CONCURRENCY))
            host_peak = {name: process_memory_mib(process.pid) for name, process in host.processes.items()}
        peak = {"edge": containers.memory_mib(containers.edge.name), "cloud": containers.memory_mib(containers.cloud.name)}
        sample = load_images(None)
        sample = sample.subset(slice(0, limit)) if limit else sample
        through_containers = run_every_link(containers, sample)
    on_host = run_all_modes(sample, 1, PHONE_JPEG_QUALITY)
    keys = ("images", "errors", "accuracy", "s1_bytes_mean", "s2_bytes_mean")
    links = {}
    bundle = ModelBundle.open()
    for mode, codec, protector in runs(bundle, bundle_protectors(bundle)):
        run = run_name(mode, codec, protector)
        links[run] = {"containers": {key: through_containers[run][key] for key in keys},
                      "host": {key: on_host[run][key] for key in keys},
                      # a split protector mixes with fresh random keys: its labels may differ between any two runs
                      "deterministic": protector_named(protector).kind == "image" or mode == "unprotected"}
    median = {where: statistics.median(run["images_per_s"] for run in runs_) for where, runs_ in throughput.items()}
    return {
        "cold_start_s": {server: {"median": statistics.median(values), "runs": values} for server, values in starts.items()},
        "memory_mib": {server: {"idle_rss": idle[server]["rss"], "peak_rss": peak[server]["peak"],
                                "host_idle_rss": host_idle[server]["rss"], "host_peak_rss": host_peak[server]["peak"]}
                       for server in ("edge", "cloud")},
        "throughput": {"concurrency": LOAD_CONCURRENCY, "requests": requests, "link": DEFAULT_CODEC,
                       "protector": DEFAULT_PROTECTOR, "threads_per_server": THREADS, "runs": throughput,
                       "median_images_per_s": median, "containers_vs_host": median["containers"] / median["host"]},
        "links": {"images": len(sample), "runs": links,
                  "identical": all(link["containers"] == link["host"] for link in links.values() if link["deterministic"]),
                  "errors": sum(link["containers"]["errors"] for link in links.values())},
    }


def markdown(sizes: dict, measured: dict | None) -> str:
    lines = ["# The edge and cloud images", "",
             f"Written by `python -m pmc2.bench.containers` (bundle sha256 `{sizes['bundle_sha256'][:16]}…`, "
             f"podman {sizes['podman']}).", "",
             "| image | base | layers | uncompressed MB | compressed MB | torch |", "|---|---|---|---|---|---|"]
    for name, image in sizes["images"].items():
        torch = "absent" if sizes["torch_absent"][name] else "PRESENT"
        lines.append(f"| {image['image']} | {image['base']} | {image['layers']} | {image['uncompressed_mb']} | "
                     f"{image['compressed_mb']} | {torch} |")
    if measured is None:
        return "\n".join(lines) + "\n"
    cold, memory, served = measured["cold_start_s"], measured["memory_mib"], measured["throughput"]
    lines += ["", f"Measured on {measured['cpu']}, {measured['cores']} cores, {measured['date']}.", "",
              "| server | cold start to /readyz, s (median of " f"{len(cold['edge']['runs'])}) | idle RSS MiB | "
              f"peak RSS MiB (c{served['concurrency']}) | host: idle / peak RSS MiB |", "|---|---|---|---|---|"]
    for server in ("edge", "cloud"):
        m = memory[server]
        lines.append(f"| {server} | {cold[server]['median']:.2f} | {m['idle_rss']:.0f} | {m['peak_rss']:.0f} | "
                     f"{m['host_idle_rss']:.0f} / {m['host_peak_rss']:.0f} |")
    median = served["median_images_per_s"]
    errors = {where: sum(run["errors"] for run in runs_) for where, runs_ in served["runs"].items()}
    lines += ["", f"Served at concurrency {served['concurrency']} ({served['requests']} requests per run, "
              f"{len(served['runs']['host'])} runs each, alternating; pmc2 mode, {served['link']} link, "
              f"{served['protector']}; {served['threads_per_server']} ORT thread per server):", "",
              "| where | images/s (median) | runs | errors |", "|---|---|---|---|"]
    for where in ("containers", "host"):
        runs_ = ", ".join(f"{run['images_per_s']:.0f}" for run in served["runs"][where])
        lines.append(f"| {where} | {median[where]:.0f} | {runs_} | {errors[where]} |")
    lines += ["", f"Containers / host: {served['containers_vs_host']:.3f}.", "",
              f"Every run of `make demo` ({measured['links']['images']} images) through the containers and on the host: "
              f"{'identical accuracy, bytes and errors' if measured['links']['identical'] else 'DIFFERENT (see containers.json)'} "
              "for every image protector and unprotected (a split protector's fresh random keys make its labels vary "
              "between any two runs).",
              "", "| run | accuracy % (containers) | S1 B | S2 B | errors (containers / host) |", "|---|---|---|---|---|"]
    for run, link in measured["links"]["runs"].items():
        c, h = link["containers"], link["host"]
        s1 = "-" if c["s1_bytes_mean"] is None else f"{c['s1_bytes_mean']:.1f}"
        lines.append(f"| {run} | {c['accuracy']:.2f} (host {h['accuracy']:.2f}) | {s1} | {c['s2_bytes_mean']:.2f} | "
                     f"{c['errors']} / {h['errors']} |")
    return "\n".join(lines) + "\n"


# ---- command line ---------------------------------------------------------------------------------------------------

def _demo(args: argparse.Namespace) -> None:
    data = load_images(args.images)
    if args.limit:
        data = data.subset(slice(0, args.limit))
    protectors = tuple(protector_named(name.strip()).name for name in args.protectors.split(",")) if args.protectors else None
    edge = "edge-encrypted" if args.encrypted else "edge"
    key = MODEL_KEY.read_bytes() if args.encrypted else None
    with tempfile.TemporaryDirectory() as workdir, container_stack(Path(workdir), edge, args.threads, key) as stack:
        print(f"containers: cloud ready in {stack.cloud.ready_s:.2f} s, edge ({IMAGES[edge]}) in {stack.edge.ready_s:.2f} s")
        summaries = run_every_link(stack, data, args.concurrency, args.jpeg_quality, protectors)
    print(f"{len(data)} images, one request each, concurrency {args.concurrency}, through the containers")
    print(format_summaries(summaries))
    print("\n" + format_accuracy_by_class(summaries))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2) + "\n")


def _write(out: Path, name: str, report: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def _sizes(args: argparse.Namespace) -> None:
    report = sizes_report(tuple(args.images.split(",")))
    print(f"wrote {_write(args.out, 'images.json', report)}")
    print(markdown(report, None))


def _measure(args: argparse.Namespace) -> None:
    sizes = sizes_report(tuple(args.images.split(",")))
    with tempfile.TemporaryDirectory() as workdir:
        measured = measure(args.requests, args.rounds, args.cold_starts, Path(workdir), args.limit)
    measured = {"cpu": cpu_model(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "bundle_sha256": sizes["bundle_sha256"],
                "image_ids": {name: image["id"] for name, image in sizes["images"].items()},
                **measured}
    _write(args.out, "images.json", sizes)
    _write(args.out, "containers.json", measured)
    (args.out / "containers.md").write_text(markdown(sizes, measured))
    print((args.out / "containers.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="make demo through the containers")
    demo.add_argument("--images", default=None, help="'sample' (default), a CIFAR-10 folder, an .npz or an image folder")
    demo.add_argument("--limit", type=positive_int, default=None)
    demo.add_argument("--concurrency", type=positive_int, default=1)
    demo.add_argument("--jpeg-quality", type=jpeg_quality, default=PHONE_JPEG_QUALITY)
    demo.add_argument("--protectors", default=None, help=f"comma-separated, of {', '.join(PROTECTORS)} (default: all)")
    demo.add_argument("--threads", type=positive_int, default=THREADS, help="ORT threads per server")
    demo.add_argument("--encrypted", action="store_true",
                      help="the edge with encrypted models (make image-edge-encrypted; key build/containers/model.key)")
    demo.add_argument("--json", type=Path, default=None)
    demo.set_defaults(run=_demo)
    sizes = commands.add_parser("sizes", help="the images' sizes → reports/deploy/images.json")
    sizes.add_argument("--images", default="edge,cloud,edge-encrypted")
    sizes.add_argument("--out", type=Path, default=OUT)
    sizes.set_defaults(run=_sizes)
    measured = commands.add_parser("measure", help="sizes, cold start, memory, throughput → reports/deploy/")
    measured.add_argument("--images", default="edge,cloud,edge-encrypted")
    measured.add_argument("--requests", type=positive_int, default=3000, help="requests per throughput run")
    measured.add_argument("--rounds", type=positive_int, default=3, help="throughput runs in each place")
    measured.add_argument("--cold-starts", type=positive_int, default=5)
    measured.add_argument("--limit", type=positive_int, default=None, help="images of the demo runs (default: all)")
    measured.add_argument("--out", type=Path, default=OUT)
    measured.set_defaults(run=_measure)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda number, _frame: sys.exit(128 + number))  # unwind: the containers are removed
    args.run(args)


if __name__ == "__main__":
    main()

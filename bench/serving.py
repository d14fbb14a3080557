"""Serving at the machine's limit: served throughput through the real servers against the compute bound.

    python -m pmc2.bench.serving [--requests 3000] → reports/bench/serving.{json,png}

Served: the phone's pmc2 mode (neural link) through a real edge and cloud on loopback with TLS (one ORT
thread each), at each concurrency; images/s, p50/p99 latency, errors and the histogram of the edge's
micro-batch sizes. Then an overload run against an edge whose queue holds few images: how many requests
get 503, and the p99 of those served.

Bound: the blocking work each server hands its worker thread, run in this process through the servers'
own units (``ServedWork``), one ORT thread, at the batch size the servers formed (median of the run):
edge (decode the phone's JPEG, then EdgeProtector.protect: generator + g_a + rANS for the neural link) plus
cloud (CloudRecognizer.decode and .classify: rANS⁻¹ + g_s + target) seconds per image, each the fastest of
ten runs (interference only adds time). The servers' peak resident memory after the concurrency runs is
recorded for sizing pods.
The load generator runs in this process too; its CPU time during each run is measured, and the
bound of that run is the cores left to the servers divided by the CPU seconds per image:
bound = (cores − load-generator cores) / (edge + cloud seconds per image).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from pmc2.bench.timing import fastest_seconds
from pmc2.machine import cpu_model
from pmc2.cloud_server.config import CloudConfig
from pmc2.cloud_server.recognition import CloudRecognizer
from pmc2.edge_server.config import EdgeConfig
from pmc2.edge_server.state import MODEL_SIZE
from pmc2.mobile_client.modes import Phone
from pmc2.mobile_client.run import run_mode, summarize
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation
from pmc2.runtime.cpu_budget import available_cpus
from pmc2.runtime.edge_protection import EdgeProtector
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY, jpeg_bytes
from pmc2.runtime.image_decoding import decode_images
from pmc2.runtime.link_codecs import DEFAULT_CODEC
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.paths import REPORTS
from pmc2.runtime.protection import DEFAULT_PROTECTOR
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.wire_format import EncodedBatch
from pmc2.serving.local_stack import LocalStack, local_stack
from pmc2.value_ranges import positive_int

CONCURRENCIES = (1, 16, 64, 256)
OVERLOAD_CONCURRENCY, OVERLOAD_QUEUE = 512, 64
CAPACITY_CONCURRENCY = 64
POD_CPUS = 2  # deploy/k8s/base: each server's CPU request
HPA_CPU_TARGET = 0.70  # deploy/k8s/base/autoscaling.yaml: the utilisation the autoscaler holds pods at
PLANNED_RATES = (1_000, 10_000)
LINK, PROTECTOR = DEFAULT_CODEC, DEFAULT_PROTECTOR  # what the phone asks the edge for, served and bounded


class ServedWork:
    """What the servers' worker threads run for the phone's pmc2 requests, built and called as the servers do
    (edge_server.app and .state, cloud_server.app): the edge decodes each request's JPEG, then protects and
    encodes the micro-batch; the cloud decodes the batch and classifies it. One ORT thread, as in local_stack."""

    def __init__(self) -> None:
        bundle, settings = ModelBundle.open(), SessionSettings(intra_op_threads=1)
        self.bundle_sha256 = bundle.sha256
        self.edge = EdgeProtector(bundle, settings, EdgeConfig.jpeg_quality, EdgeConfig.webp_quality)
        self.cloud = CloudRecognizer(bundle, settings, CloudConfig.max_image_pixels)

    def edge_batch(self, jpegs: list[bytes]) -> EncodedBatch:
        images = np.concatenate([decode_images([jpeg], EdgeConfig.max_image_pixels, MODEL_SIZE, EdgeConfig.resize_policy)
                                 for jpeg in jpegs])
        return self.edge.protect(images, LINK, PROTECTOR).batch

    def cloud_batch(self, batch: EncodedBatch) -> list[int]:
        return self.cloud.classify(self.cloud.decode(batch))


def compute_seconds_per_image(work: ServedWork, batch_size: int, repeats: int = 10) -> dict[str, float]:
    """Single-thread seconds per image (fastest run) of the edge's and the cloud's share of ``work`` at ``batch_size``."""
    pixels = np.resize(load_evaluation(None).images, (batch_size, 32, 32, 3))
    jpegs = [jpeg_bytes(image, PHONE_JPEG_QUALITY) for image in pixels]
    batch = work.edge_batch(jpegs)
    edge = fastest_seconds(lambda: work.edge_batch(jpegs), repeats)
    cloud = fastest_seconds(lambda: work.cloud_batch(batch), repeats)
    return {"edge": edge / batch_size, "cloud": cloud / batch_size}


def served(phone: Phone, data: LabelledImages, concurrency: int, context) -> dict:
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    records = asyncio.run(run_mode(phone, "pmc2", data, context, concurrency, progress=False))
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    summary = summarize(records)
    batches = Counter(record.batch_size for record in records if record.batch_size)
    return {"concurrency": concurrency, "requests": len(records), "errors": summary["errors"],
            "first_error": summary["first_error"], "images_per_s": (len(records) - summary["errors"]) / wall,
            "latency_p50_ms": summary["latency_p50_ms"], "latency_p99_ms": summary["latency_p99_ms"],
            "load_generator_cores": cpu / wall, "batch_sizes": dict(sorted(batches.items())),
            "median_batch_size": int(statistics.median(r.batch_size for r in records if r.batch_size))}


def _phone(stack: LocalStack) -> Phone:
    return Phone(stack.edge_url, stack.cloud_url, stack.token, PHONE_JPEG_QUALITY, LINK, protector=PROTECTOR)


def run(requests: int, workdir: Path) -> dict:
    data = load_evaluation(None)
    repeated = data.subset(np.resize(np.arange(len(data)), requests))
    runs = []
    with local_stack(workdir / "stack") as stack:
        phone = _phone(stack)
        asyncio.run(run_mode(phone, "pmc2", data.subset(slice(0, 200)), stack.client_ssl(), 16, progress=False))
        for concurrency in CONCURRENCIES:
            runs.append(served(phone, repeated, concurrency, stack.client_ssl()))
        peak_memory = stack.peak_memory_mib()
    with local_stack(workdir / "overload", extra_edge_args=("--max-queued-images", str(OVERLOAD_QUEUE))) as stack:
        overload = served(_phone(stack), repeated, OVERLOAD_CONCURRENCY, stack.client_ssl())
    cores, work = available_cpus(), ServedWork()
    for result in runs:
        per_image = compute_seconds_per_image(work, result["median_batch_size"])
        result["compute_seconds_per_image"] = per_image
        result["bound_images_per_s"] = (cores - result["load_generator_cores"]) / (per_image["edge"] + per_image["cloud"])
        result["served_over_bound"] = result["images_per_s"] / result["bound_images_per_s"]
    return {"bundle_sha256": work.bundle_sha256, "cpu": cpu_model(), "cores": cores, "link_codec": LINK,
            "protector": PROTECTOR, "runs": runs, "capacity": capacity(runs, peak_memory),
            "overload": {**overload, "queue_limit_images": OVERLOAD_QUEUE}}


def capacity(runs: list[dict], peak_memory_mib: dict[str, float]) -> dict:
    """Pod sizing from the c64 run: a 2-CPU pod of one server serves its CPU time per image into 2 cores at the
    served/bound efficiency measured here; the autoscaler keeps pods at HPA_CPU_TARGET."""
    run = next(r for r in runs if r["concurrency"] == CAPACITY_CONCURRENCY)
    per_pod = {side: run["served_over_bound"] * POD_CPUS / seconds for side, seconds in run["compute_seconds_per_image"].items()}
    return {"from_concurrency": CAPACITY_CONCURRENCY, "pod_cpus": POD_CPUS, "hpa_cpu_target": HPA_CPU_TARGET,
            "images_per_s_per_pod": per_pod, "peak_memory_mib": peak_memory_mib,
            "pods_needed": {rate: {side: math.ceil(rate / (HPA_CPU_TARGET * images)) for side, images in per_pod.items()}
                            for rate in PLANNED_RATES}}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    concurrency = [r["concurrency"] for r in runs]
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(10, 4))
    panels = ((throughput, "images / s", (("images_per_s", "served"), ("bound_images_per_s", "compute bound"))),
              (latency, "end-to-end ms", (("latency_p50_ms", "p50"), ("latency_p99_ms", "p99"))))
    for axes, ylabel, lines in panels:
        for key, label in lines:
            axes.plot(concurrency, [r[key] for r in runs], "o-", label=label)
        axes.set_xscale("log", base=2)
        axes.set_xlabel("concurrent requests")
        axes.set_ylabel(ylabel)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=positive_int, default=3000, help="requests per concurrency")
    parser.add_argument("--out", type=Path, default=REPORTS / "bench")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        results = run(args.requests, Path(workdir))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "serving.png")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

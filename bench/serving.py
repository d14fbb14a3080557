"""Serving at the machine's limit: served throughput through the real servers against the compute bound.

    python -m pmc2.bench.serving [--requests 3000] → reports/bench/serving.{json,png}

Served: the phone's pmc2 mode (neural link) through a real edge and cloud on loopback with TLS (one ORT
thread each), at each concurrency; images/s, p50/p99 latency, errors and the histogram of the edge's
micro-batch sizes. Then an overload run against an edge whose queue holds few images: how many requests
get 503, and the p99 of those served.

Bound: the same models and coder in this process, one thread, at the batch size the servers formed
(median of the run): edge (generator + g_a + rANS) plus cloud (rANS⁻¹ + g_s + target) CPU seconds per
image. The servers' peak resident memory after the concurrency runs is recorded for sizing pods.
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

from pmc2.bench.timing import cpu_model, median_seconds
from pmc2.mobile_client.modes import Phone
from pmc2.mobile_client.run import run_mode, summarize
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation
from pmc2.runtime.cpu_budget import available_cpus
from pmc2.runtime.image_codecs import through_phone_jpeg
from pmc2.runtime.link_codecs import DEFAULT_CODEC, CodecContext, codec_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.paths import REPORTS
from pmc2.runtime.pipeline import classify
from pmc2.runtime.protection import Protector
from pmc2.runtime.sessions import SessionSettings
from pmc2.serving.local_stack import local_stack
from pmc2.value_ranges import positive_int

CONCURRENCIES = (1, 16, 64, 256)
OVERLOAD_CONCURRENCY, OVERLOAD_QUEUE = 512, 64
CAPACITY_CONCURRENCY = 64
POD_CPUS = 2  # deploy/k8s/base: each server's CPU request
HPA_CPU_TARGET = 0.70  # deploy/k8s/base/autoscaling.yaml: the utilisation the autoscaler holds pods at
PLANNED_RATES = (1_000, 10_000)


def compute_seconds_per_image(batch_size: int, repeats: int = 10) -> dict[str, float]:
    """Single-thread seconds per image of the edge's and the cloud's model and coder work at ``batch_size``."""
    bundle, settings = ModelBundle.open(), SessionSettings(intra_op_threads=1)
    g_a, g_s = bundle.session("g_a", settings), bundle.session("g_s", settings)
    protector = Protector(bundle, settings, g_a=g_a, g_s=g_s)
    codec = codec_named(DEFAULT_CODEC).build(CodecContext(bundle, g_a=g_a, g_s=g_s))
    target = bundle.session("target", settings)
    pixels = np.resize(through_phone_jpeg(load_evaluation(None).images[:batch_size], 90), (batch_size, 32, 32, 3))
    streams = codec.encode(protector.perturb(pixels))
    edge = median_seconds(lambda: codec.encode(protector.pixels_for_links(protector.perturb(pixels))), repeats)
    cloud = median_seconds(lambda: classify(target, codec.decode(streams, batch_size)), repeats)
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


def run(requests: int, workdir: Path) -> dict:
    data = load_evaluation(None)
    repeated = data.subset(np.resize(np.arange(len(data)), requests))
    runs = []
    with local_stack(workdir / "stack") as stack:
        phone = Phone(stack.edge_url, stack.cloud_url, stack.token, 90, DEFAULT_CODEC)
        asyncio.run(run_mode(phone, "pmc2", data.subset(slice(0, 200)), stack.client_ssl(), 16, progress=False))
        for concurrency in CONCURRENCIES:
            runs.append(served(phone, repeated, concurrency, stack.client_ssl()))
        peak_memory = stack.peak_memory_mib()
    with local_stack(workdir / "overload", extra_edge_args=("--max-queued-images", str(OVERLOAD_QUEUE))) as stack:
        phone = Phone(stack.edge_url, stack.cloud_url, stack.token, 90, DEFAULT_CODEC)
        overload = served(phone, repeated, OVERLOAD_CONCURRENCY, stack.client_ssl())
    cores = available_cpus()
    for result in runs:
        per_image = compute_seconds_per_image(result["median_batch_size"])
        result["compute_seconds_per_image"] = per_image
        result["bound_images_per_s"] = (cores - result["load_generator_cores"]) / (per_image["edge"] + per_image["cloud"])
        result["served_over_bound"] = result["images_per_s"] / result["bound_images_per_s"]
    return {"cpu": cpu_model(), "cores": cores, "link_codec": DEFAULT_CODEC, "runs": runs,
            "capacity": capacity(runs, peak_memory),
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

"""Soak: many requests through a real edge + cloud, the servers' memory before and after.

    python -m pmc2.bench.soak [--requests 20000] [--concurrency 16] [--out reports/bench/soak.json]

A warm-up run first (so one-time allocations such as ORT's arenas are counted in "before"), then the
soak itself: the phone's pmc2 mode on the bundled images, repeated, with ``--concurrency`` requests in
flight, cycling through every edge→cloud codec. Reports errors, throughput and each server's resident
memory (VmRSS) before and after, with the growth in percent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from pmc2.machine import cpu_model
from pmc2.serving.local_stack import local_stack
from pmc2.mobile_client.modes import Phone
from pmc2.mobile_client.run import run_mode, summarize
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.paths import REPORTS
from pmc2.runtime.link_codecs import codecs_for
from pmc2.runtime.protection import DEFAULT_PROTECTOR, protector_compressor
from pmc2.value_ranges import non_negative_int, positive_int


def resident_mib(pid: int) -> float:
    """VmRSS of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def repeated(data: LabelledImages, count: int) -> LabelledImages:
    return data.subset(np.resize(np.arange(len(data)), count))


def run(requests: int, warmup: int, concurrency: int, workdir: Path) -> dict:
    data = load_evaluation(None)
    bundle = ModelBundle.open()
    codecs = codecs_for(bundle, protector_compressor(bundle, DEFAULT_PROTECTOR))  # what the default protector sends
    with local_stack(workdir) as stack:
        pids = {name: process.pid for name, process in stack.processes.items()}

        def send(count: int) -> list:
            """``count`` requests shared out among the codecs as evenly as they go (the first ones take the rest)."""
            records = []
            for index, codec in enumerate(codecs):
                share = count // len(codecs) + (index < count % len(codecs))
                phone = Phone(stack.edge_url, stack.cloud_url, stack.token, 90, codec)
                records += asyncio.run(run_mode(phone, "pmc2", repeated(data, share), stack.client_ssl(), concurrency))
            return records

        send(warmup)
        before = {name: resident_mib(pid) for name, pid in pids.items()}
        start = time.perf_counter()
        records = send(requests)
        seconds = time.perf_counter() - start
        after = {name: resident_mib(pid) for name, pid in pids.items()}
        alive = stack.alive()
    summary = summarize(records)
    return {
        "bundle_sha256": bundle.sha256, "cpu": cpu_model(),
        "requests": len(records), "warmup_requests": warmup, "concurrency": concurrency, "codecs": list(codecs),
        "errors": summary["errors"], "first_error": summary["first_error"], "accuracy": summary["accuracy"],
        "seconds": round(seconds, 1), "requests_per_second": round(len(records) / seconds, 1),
        "latency_p50_ms": summary["latency_p50_ms"], "latency_p99_ms": summary["latency_p99_ms"],
        "rss_mib_before": before, "rss_mib_after": after,
        "rss_growth_percent": {name: round(100 * (after[name] / before[name] - 1), 2) for name in before},
        "processes_alive_after": alive,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=positive_int, default=20_000)
    parser.add_argument("--warmup", type=non_negative_int, default=2_000)
    parser.add_argument("--concurrency", type=positive_int, default=16)
    parser.add_argument("--out", type=Path, default=REPORTS / "bench" / "soak.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        results = run(args.requests, args.warmup, args.concurrency, Path(workdir))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

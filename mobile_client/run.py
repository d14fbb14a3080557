"""Send a set of images through one mode with bounded concurrency and rate; summarise the records."""

from __future__ import annotations

import asyncio
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from tqdm import tqdm

from pmc2.mobile_client.modes import STAGES, ImageRecord, Phone
from pmc2.runtime.cifar10 import CLASSES, LabelledImages
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY
from pmc2.runtime.link_codecs import codecs_for
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.protection import DEFAULT_PROTECTOR, bundle_protectors, protector_compressor, protector_named
from pmc2.serving.local_stack import local_stack
from pmc2.value_ranges import POSITIVE


def runs(bundle: ModelBundle, protectors: tuple[str, ...]) -> list[tuple[str, str | None, str]]:
    """(mode, codec, protector) of every run: PMC² once per image protector and edge→cloud link codec its
    compressor in ``bundle`` takes, and once per split protector (it sends its own tensors: codec None); pp-baseline
    once per image protector; unprotected once."""
    image = [name for name in protectors if protector_named(name).kind == "image"]
    split = [name for name in protectors if protector_named(name).kind == "split"]
    return [*(("pmc2", codec, protector) for protector in image
              for codec in codecs_for(bundle, protector_compressor(bundle, protector))),
            *(("pmc2", None, protector) for protector in split),
            *(("pp-baseline", None, protector) for protector in image), ("unprotected", None, DEFAULT_PROTECTOR)]


def run_name(mode: str, codec: str | None, protector: str) -> str:
    """"pmc2/neural" for the default protector, "pmc2+dapter/neural" for another; no codec where the run
    names none (the direct modes, split protectors)."""
    name = mode if protector == DEFAULT_PROTECTOR or mode == "unprotected" else f"{mode}+{protector}"
    return f"{name}/{codec}" if codec else name


async def run_mode(phone: Phone, mode: str, data: LabelledImages, ssl_context: ssl.SSLContext,
                   concurrency: int = 1, rate: float | None = None, progress: bool = True) -> list[ImageRecord]:
    """One request per image; at most ``concurrency`` in flight and ``rate`` started per second."""
    POSITIVE.require(concurrency, "concurrency")
    records = [ImageRecord(i, int(label)) for i, label in enumerate(data.labels)]
    slots = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(records), desc=mode, disable=not progress, leave=False)
    connector = aiohttp.TCPConnector(ssl=ssl_context, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(record: ImageRecord) -> None:
            async with slots:
                await phone.send(mode, session, data.images[record.index], record)
                bar.update()

        tasks = []
        start = time.perf_counter()
        for number, record in enumerate(records):
            if rate:
                await asyncio.sleep(max(0.0, start + number / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(record)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    bar.close()
    for record in records:
        record.stages_ms.setdefault("elapsed_run_s", elapsed)
    return records


def run_all_modes(data: LabelledImages, concurrency: int = 1, phone_quality: int = PHONE_JPEG_QUALITY,
                  protectors: tuple[str, ...] | None = None) -> dict[str, dict]:
    """A local cloud + edge stack; one request per image for each of ``runs`` of ``protectors`` (default:
    every one the bundle holds); a summary per run."""
    bundle = ModelBundle.open()
    summaries = {}
    with tempfile.TemporaryDirectory() as workdir, local_stack(Path(workdir), mutual_tls=False) as stack:
        for mode, codec, protector in runs(bundle, protectors or bundle_protectors(bundle)):
            phone = Phone(stack.edge_url, stack.cloud_url, stack.token, phone_quality, codec, bundle, protector=protector)
            records = asyncio.run(run_mode(phone, mode, data, stack.client_ssl(), concurrency))
            summaries[run_name(mode, codec, protector)] = summarize(records)
    return summaries


def summarize(records: list[ImageRecord]) -> dict:
    done = [r for r in records if r.error is None]
    latencies = [r.end_to_end_ms for r in done]
    elapsed = max((r.stages_ms.get("elapsed_run_s", 0.0) for r in records), default=0.0)

    def mean(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    return {
        "images": len(records),
        "errors": len(records) - len(done),
        "first_error": next((r.error for r in records if r.error), None),
        "accuracy": 100.0 * sum(r.correct for r in done) / len(records) if records else 0.0,
        "s1_bytes_mean": mean([r.s1_bytes for r in done]),
        "s2_bytes_mean": mean([r.s2_bytes for r in done]),
        "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
        "throughput_images_per_s": len(done) / elapsed if elapsed else None,
        "accuracy_by_class": {
            name: 100.0 * sum(r.correct for r in done if r.truth == label) / count
            for label, name in enumerate(CLASSES) if (count := sum(r.truth == label for r in records))
        },
        "stage_medians_ms": {
            stage: statistics.median(values)
            for stage in STAGES
            if (values := [r.stages_ms[stage] for r in done if stage in r.stages_ms])
        },
    }


def format_summaries(rows: dict[str, dict]) -> str:
    """One line per run: accuracy, mean S1/S2, latency percentiles, stage medians."""
    def show(value, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    width = max(len("run"), *map(len, rows)) + 2
    header = f"{'run':<{width}}{'acc %':>7}{'S1 B':>9}{'S2 B':>11}{'p50 ms':>8}{'p99 ms':>8}{'img/s':>8}{'err':>5}  stage medians (ms)"
    lines = [header]
    for name, s in rows.items():
        stages = " ".join(f"{k}={v:.2f}" for k, v in s["stage_medians_ms"].items())
        lines.append(
            f"{name:<{width}}{s['accuracy']:>7.2f}{show(s['s1_bytes_mean']):>9}{show(s['s2_bytes_mean'], 2):>11}"
            f"{show(s['latency_p50_ms']):>8}{show(s['latency_p99_ms']):>8}{show(s['throughput_images_per_s']):>8}"
            f"{s['errors']:>5}  {stages}"
        )
    return "\n".join(lines)


def format_accuracy_by_class(rows: dict[str, dict]) -> str:
    """Accuracy (%) per true class, one line per run as in ``format_summaries``; "-" where a class had no image."""
    width = max(len("run"), *map(len, rows)) + 2
    columns = [max(len(name), len("100.0")) + 2 for name in CLASSES]
    lines = ["accuracy % by true class",
             f"{'run':<{width}}" + "".join(f"{name:>{column}}" for name, column in zip(CLASSES, columns))]
    for run, summary in rows.items():
        cells = ["-" if (cell := summary["accuracy_by_class"].get(name)) is None else f"{cell:.1f}" for name in CLASSES]
        lines.append(f"{run:<{width}}" + "".join(f"{cell:>{column}}" for cell, column in zip(cells, columns)))
    return "\n".join(lines)

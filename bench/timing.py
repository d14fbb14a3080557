"""Wall time of a callable after warm-up (median, or fastest for bounds), and the CPU it was measured on."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def _samples(function: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def median_seconds(function: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    return statistics.median(_samples(function, repeats, warmup))


def fastest_seconds(function: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """The shortest run: other processes and interrupts only ever add time, so a bound on throughput takes this."""
    return min(_samples(function, repeats, warmup))


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (results differ between vendors, so every benchmark records it)."""
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()

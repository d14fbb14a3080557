"""Wall time of a callable after warm-up: the median, or the fastest for bounds (the CPU: ``pmc2.machine``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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


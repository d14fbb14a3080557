"""The machine a measurement ran on: every benchmark and report records it, because results differ between CPUs."""

from __future__ import annotations

import platform
from pathlib import Path

BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})  # x86 CPU features that make bf16 matrix products fast


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name."""
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def bf16_is_fast(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this x86 CPU multiplies bf16 matrices in hardware (AMX or AVX-512-BF16). Elsewhere bf16 autocast is
    emulated in software, slower than float32. Arm CPUs list their features
    under "Features", not "flags": bf16 stays off there until someone measures it."""
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return not BF16_FLAGS.isdisjoint(line.split(":", 1)[1].split())
    return False

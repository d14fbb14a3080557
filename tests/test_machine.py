"""What the project reads off the CPU: its model name, and whether bf16 autocast runs in hardware there."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmc2.machine import bf16_is_fast, cpu_model

AVX2_EPYC = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"


@pytest.mark.parametrize(("extra_flags", "fast"), [("", False), (" avx512f avx512_bf16", True), (" amx_bf16 amx_tile", True),
                                                   (" avx512f avx512_vnni", False)])
def test_bf16_is_fast_only_with_hardware_bf16(tmp_path: Path, extra_flags: str, fast: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(AVX2_EPYC.replace("fma\n", f"fma{extra_flags}\n"))
    assert bf16_is_fast(cpuinfo) is fast


def test_the_cpu_model_is_read_off_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(AVX2_EPYC)
    assert cpu_model(cpuinfo) == "AMD EPYC"


def test_without_cpuinfo_bf16_stays_off(tmp_path: Path) -> None:
    assert bf16_is_fast(tmp_path / "absent") is False

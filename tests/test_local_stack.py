"""The local stack the demo and the serving benchmark use: real server processes, their memory reported."""

from __future__ import annotations

from pathlib import Path

from pmc2.serving.local_stack import local_stack


def test_the_local_stack_reports_each_servers_peak_memory(tmp_path: Path) -> None:
    with local_stack(tmp_path) as stack:
        assert stack.alive() == {"cloud": True, "edge": True}
        peaks = stack.peak_memory_mib()
    assert set(peaks) == {"cloud", "edge"}
    # a Python process with onnxruntime and the models loaded holds tens of MiB, far below a pod's GiB
    assert all(30 < mib < 2048 for mib in peaks.values()), peaks

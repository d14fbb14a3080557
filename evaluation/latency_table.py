"""The report's latency section: each run through the real servers, its per-stage medians, and its p50 as a
multiple of the unprotected run's p50 measured in the same evaluation.

The host's speed drifts by tens of percent between hours (the same serving code read p50 9 ms and 17 ms for
pmc2/neural on two runs of this machine), so milliseconds compare only within one report; the ratio to the
unprotected run is the figure to compare across reports.
"""

from __future__ import annotations

from pmc2.evaluation.table import markdown_table
from pmc2.mobile_client.run import run_name
from pmc2.runtime.protection import DEFAULT_PROTECTOR

HEADING = "## Latency through the real servers (PMC² Fig. 4 analogue)"
REFERENCE_RUN = run_name("unprotected", None, DEFAULT_PROTECTOR)


def latency_section(latency: dict[str, dict], images: int) -> str:
    """``latency`` (run name → ``mobile_client.run.summarize`` output) as the report's section."""
    stages = list(dict.fromkeys(stage for summary in latency.values() for stage in summary["stage_medians_ms"]))
    reference = latency[REFERENCE_RUN]["latency_p50_ms"]
    rows = [[run, f"{s['accuracy']:.1f}%", f"{s['latency_p50_ms']:.2f}", f"{s['latency_p50_ms'] / reference:.2f}",
             *[f"{s['stage_medians_ms'].get(stage, 0.0):.2f}" for stage in stages]] for run, s in latency.items()]
    return "\n\n".join([
        HEADING,
        f"{images} images, one request at a time, cloud and edge as separate processes on loopback with TLS, one ORT "
        f"thread each. Per-stage medians in ms. The host's speed drifts between hours, so compare reports by "
        f"× {REFERENCE_RUN}: each run's p50 over the {REFERENCE_RUN} run's p50 in this same evaluation.",
        markdown_table(["run", "accuracy", "p50 ms", f"× {REFERENCE_RUN}", *stages], rows),
        "![latency breakdown](latency.png)",
    ])

"""Run the simulated phone through a local cloud + edge stack in every mode and edge→cloud codec."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pmc2.demo.local_stack import local_stack
from pmc2.mobile_client.modes import Phone
from pmc2.mobile_client.run import run_mode, summarize
from pmc2.runtime.cifar10 import LabelledImages
from pmc2.runtime.model_bundle import ModelBundle

RUNS = (("pmc2", "neural"), ("pmc2", "jpeg"), ("pmc2", "png"), ("pp-baseline", None), ("unprotected", None))


def run_all_modes(data: LabelledImages, concurrency: int = 1, phone_quality: int = 90) -> dict[str, dict]:
    """One request per image for each run in RUNS; a summary (accuracy, bytes, latency, stage medians) per run."""
    bundle = ModelBundle.open()
    summaries = {}
    with tempfile.TemporaryDirectory() as workdir, local_stack(Path(workdir), mutual_tls=False) as stack:
        for mode, codec in RUNS:
            phone = Phone(stack.edge_url, stack.cloud_url, stack.token, phone_quality, codec or "neural", bundle)
            records = asyncio.run(run_mode(phone, mode, data, stack.client_ssl(), concurrency))
            summaries[f"{mode}/{codec}" if codec else mode] = summarize(records)
    return summaries

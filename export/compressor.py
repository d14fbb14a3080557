"""The neural compressor: CompressAI's FactorizedPrior (Ballé et al. 2018), N/M configurable
(paper size 128/192; the shipped CPU default 64/96).

    x ──g_a──▶ y ──round(y − medians)──▶ rANS ──▶ bytes ──▶ rANS⁻¹ ──+ medians──▶ ŷ ──g_s──▶ x̂

Inputs are [0, 1] images (the perturbed image after de-normalisation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from compressai.models import FactorizedPrior

from pmc2.runtime.rans import EntropyTables

PAPER_N, PAPER_M = 128, 192
CPU_N, CPU_M = 64, 96  # the shipped default: trains 2-3x faster on 2 cores, 1/4 of the weights


def build_compressor(n: int = PAPER_N, m: int = PAPER_M) -> FactorizedPrior:
    return FactorizedPrior(N=n, M=m)


def load_compressor(path: Path) -> FactorizedPrior:
    """Rebuild a compressor from a checkpoint and refresh its integer CDF tables for coding."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = build_compressor(checkpoint["n"], checkpoint["m"])
    model.load_state_dict(checkpoint["state_dict"])
    model.update(force=True)
    return model.eval()


def entropy_tables(model: FactorizedPrior) -> EntropyTables:
    """The EntropyBottleneck's integer CDF tables and medians, as the torch-free runtime reads them."""
    bottleneck = model.entropy_bottleneck
    return EntropyTables(
        bottleneck._quantized_cdf.numpy().astype(np.int32), bottleneck._cdf_length.numpy().astype(np.int32),
        bottleneck._offset.numpy().astype(np.int32),
        bottleneck._get_medians().detach().reshape(-1).numpy().astype(np.float32),
    )

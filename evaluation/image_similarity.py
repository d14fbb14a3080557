"""Per-image PSNR and SSIM between [0, 1] NCHW images (the reconstruction attack's scores)."""

from __future__ import annotations

import torch
from pytorch_msssim import ssim


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each pair (peak 1.0), capped at 100 dB for identical images."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def structural_similarity(a: torch.Tensor, b: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """SSIM of each pair (Gaussian window 11, σ 1.5, as pytorch-msssim)."""
    return torch.cat([ssim(a[start : start + chunk].float(), b[start : start + chunk].float(), data_range=1.0,
                           size_average=False) for start in range(0, len(a), chunk)])


def similarity_summary(reconstructed: torch.Tensor, originals: torch.Tensor) -> dict[str, float]:
    """Mean PSNR and SSIM of reconstructions against the originals."""
    return {"psnr_db": float(psnr(reconstructed, originals).mean()),
            "ssim": float(structural_similarity(reconstructed, originals).mean())}

"""What the cloud receives from a pair's models, for any images.

    original ──phone JPEG──▶ edge input ──generator──▶ x' ─▶ "perturbed": what the PNG / JPEG links carry
                                                        │    (x', or x̂ for a generator trained with the "decoded" tie)
                                                        └──g_a, round, g_s──▶ x̂ "neural" (what the cloud decodes)

The neural view is the compressor's forward pass in eval mode: the latent rounded around the medians as the
rANS coder codes it, then g_s, clamped to [0, 1] as the cloud's decoder does.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from pmc2.training.data import denormalize, normalize
from pmc2.training.evaluate import TrainedPipeline
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY, through_phone_jpeg
from pmc2.runtime.normalization import to_unit_nchw

VIEWS = ("perturbed", "neural")
CHUNK = 500


@torch.inference_mode()
def cloud_views(pipeline: TrainedPipeline, images_uint8: np.ndarray, phone_quality: int = PHONE_JPEG_QUALITY,
                progress: str | None = None) -> dict[str, torch.Tensor]:
    """[0, 1] NCHW tensors of every view of uint8 HWC ``images_uint8``, keyed by view name."""
    pipeline.compressor.eval()
    views = {name: [] for name in VIEWS}
    starts = range(0, len(images_uint8), CHUNK)
    for start in tqdm(starts, desc=progress or "cloud views", disable=progress is None, leave=False):
        received = torch.from_numpy(to_unit_nchw(through_phone_jpeg(images_uint8[start : start + CHUNK], phone_quality)))
        perturbed = denormalize(pipeline.generator(normalize(received))).clamp(0, 1)
        views["perturbed"].append(pipeline.link_images(perturbed))
        views["neural"].append(pipeline.compressor(perturbed)["x_hat"].clamp(0, 1))
    return {name: torch.cat(chunks) for name, chunks in views.items()}

"""Folding a per-channel affine map into a compressor's first and last layers (training/compressor_rescaling.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from pmc2.training.compressor import ARCHITECTURES, build_compressor, latent_size
from pmc2.training.compressor_rescaling import ChannelAffine, channel_statistics, fold_into_compressor, matching_affine


def low_contrast_images(count: int = 16) -> torch.Tensor:
    """Images spread 0.03 around grey, as DAPter's output."""
    generator = torch.Generator().manual_seed(0)
    return 0.5 + 0.03 * torch.randn(count, 3, 32, 32, generator=generator)


def test_the_matching_map_gives_the_images_the_references_mean_and_spread() -> None:
    reference = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    images = low_contrast_images()
    mapped_mean, mapped_std = channel_statistics(matching_affine(images, channel_statistics(reference))(images))
    reference_mean, reference_std = channel_statistics(reference)
    torch.testing.assert_close(mapped_mean, reference_mean)
    torch.testing.assert_close(mapped_std, reference_std)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_folded_compressor_codes_x_as_the_original_coded_the_mapped_x(architecture: str) -> None:
    torch.manual_seed(2)
    original = build_compressor(8, 8, architecture).eval()
    folded = copy.deepcopy(original)
    images = low_contrast_images()
    affine = ChannelAffine(scale=torch.tensor([8.0, 9.0, 7.5]), shift=torch.tensor([-3.5, -4.0, -3.2]))
    fold_into_compressor(folded, affine)
    with torch.no_grad():
        # the first layer (a 5×5 convolution of stride 2, or a residual block: 3×3 of stride 2, then 3×3, beside a
        # 1×1 skip): equal wherever its windows reach no padding of the image
        torch.testing.assert_close(folded.g_a[0](images)[..., 2:-2, 2:-2],
                                   original.g_a[0](affine(images))[..., 2:-2, 2:-2], rtol=1e-4, atol=1e-4)
        latent = torch.randn(4, 8, *latent_size(original))
        decoded_back = (original.g_s(latent) - affine.shift.view(1, -1, 1, 1)) / affine.scale.view(1, -1, 1, 1)
        torch.testing.assert_close(folded.g_s(latent), decoded_back, rtol=1e-4, atol=1e-5)

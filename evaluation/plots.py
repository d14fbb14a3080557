"""The report's figures: rate–accuracy curves, per-stage latency bars, the privacy image grid."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pmc2.evaluation.measurements import CodecResult  # noqa: E402


def rate_accuracy(jpeg_sweep: list[CodecResult], webp_sweep: list[CodecResult], links: list[tuple[str, CodecResult]],
                  neural: list[CodecResult], perturbed_accuracy: float, path: Path) -> None:
    """Accuracy vs bytes/image: the JPEG 4:4:4 and lossy WebP quality sweeps, each labelled link at its fixed
    settings (PNG, lossless WebP), and each neural compressor with one stream per image (filled) and per 256
    images (hollow)."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for sweep, key, colour, label in ((jpeg_sweep, "jpeg_quality", "tab:blue", "JPEG 4:4:4, quality 50–100"),
                                      (webp_sweep, "webp_quality", "tab:green", "WebP (lossy), quality 10–100")):
        axes.plot([r.bytes_mean for r in sweep], [r.accuracy for r in sweep], "-", color=colour, label=label)
        for result in (sweep[0], sweep[-1]):
            axes.annotate(f"q{result.settings[key]}", (result.bytes_mean, result.accuracy), fontsize=8)
    styles = itertools.cycle(zip("sDPXh", ("black", "tab:green", "tab:orange", "tab:red", "tab:brown")))
    for (label, result), (marker, colour) in zip(links, styles):
        axes.plot(result.bytes_mean, result.accuracy, marker, color=colour, label=label)
    for result, marker in zip(neural, "o^vD<>p*"):
        axes.plot(result.bytes_mean, result.accuracy, marker, color="tab:purple", label=f"neural: {result.name}")
        if 256 in result.batched_bytes:
            axes.plot(result.batched_bytes[256], result.accuracy, marker, color="tab:purple", mfc="none")
    axes.axhline(perturbed_accuracy, color="grey", linestyle=":", label="perturbed, uncompressed")
    axes.set_xscale("log")
    axes.set_xlabel("edge→cloud bytes per image (log scale; hollow = one rANS stream per 256 images)")
    axes.set_ylabel("target accuracy (%)")
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def latency_breakdown(summaries: dict[str, dict], path: Path) -> None:
    """Stacked per-stage median latency for every run through the real servers (PMC² Fig. 4)."""
    runs = list(summaries)
    stages = list(dict.fromkeys(stage for run in runs for stage in summaries[run]["stage_medians_ms"]))
    figure, axes = plt.subplots(figsize=(8, 4.5))
    bottom = np.zeros(len(runs))
    colours = plt.get_cmap("tab10")
    for index, stage in enumerate(stages):
        values = np.array([summaries[run]["stage_medians_ms"].get(stage, 0.0) for run in runs])
        axes.bar(runs, values, bottom=bottom, label=stage, color=colours(index % 10))
        bottom += values
    axes.set_ylabel("median per stage (ms)")
    axes.legend(fontsize=8, ncol=2)
    axes.tick_params(axis="x", labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def image_grid(rows: dict[str, np.ndarray], path: Path) -> None:
    """One row per stage of the pipeline, one column per image (MMSys'22 Fig. 6)."""
    count = len(next(iter(rows.values())))
    figure, axes = plt.subplots(len(rows), count, figsize=(1.2 * count, 1.35 * len(rows)), squeeze=False)
    for row, (title, images) in enumerate(rows.items()):
        for column in range(count):
            axes[row, column].imshow(images[column], interpolation="nearest")
            axes[row, column].axis("off")
        axes[row, 0].set_title(title, fontsize=9, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

"""Regenerate the evaluation report (Markdown, JSON and plots) from the shipped models.

    python -m pmc2.evaluation [--parts runs/evaluation_parts [--resume]]   → reports/evaluation/

``--parts`` keeps each part (a pair's measurements, the latency runs, FaceMix, the privacy attacks) as it
finishes, and ``--resume`` continues such a run after a stop (``pmc2.evaluation.resumable``)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from pmc2.mobile_client.run import run_all_modes
from pmc2.machine import cpu_model
from pmc2.evaluation import plots
from pmc2.evaluation.edge_cost import edge_ms_per_image
from pmc2.evaluation.facemix import measure_facemix, write_facemix
from pmc2.evaluation.inverse_attack import InverseAttackConfig
from pmc2.evaluation.flops import pair_gflops
from pmc2.evaluation.markdown import render, render_before_after
from pmc2.evaluation.privacy import PrivacyConfig, measure_privacy, write_grids
from pmc2.evaluation.resumable import PartStore, run_state
from pmc2.evaluation.measurements import (
    COMPRESSORS, CodecResult, EdgeImages, at_defaults, compressor_settings, compressor_with_config, link_result,
    links_in_measuring_order, lowest_matching_quality, measured_links, result_key,
)
from pmc2.training.evaluate import TrainedPipeline, exported_codebook
from pmc2.training.pairs import DEFAULT_PAIR, ModelPair, every_variant
from pmc2.training.records import git_commit, lineage_hours, sha256_file
from pmc2.training.training_cli import add_bf16_option
from pmc2.runtime.cifar10 import LabelledImages, load_evaluation, load_split
from pmc2.runtime.image_codecs import PHONE_JPEG_QUALITY
from pmc2.runtime.link_codecs import LINK_CODECS, JpegLink, WebpLink, codec_named
from pmc2.runtime.paths import REPORTS, SHARED_DATA
from pmc2.value_ranges import jpeg_quality, non_negative_int, positive_int

# images per rANS stream in the batched-bitstreams table: 16, and each size a one-stream codec is evaluated at
BATCH_SIZES = tuple(sorted({16, *(codec.evaluated_images_per_stream for codec in LINK_CODECS.values())} - {1}))
EDGE_COST_IMAGES = 1024
PAPER_SUBSAMPLING_QUALITY = 89
WEBP_QUALITIES = range(10, 101, 10)
NOT_IN_THE_KEY = {"parts", "resume", "out", "before"}  # where a run keeps and writes things, not what it measures


def measure_pair(pair: ModelPair, data: LabelledImages, phone_quality: int, full: bool) -> dict:
    """Table 3, privacy, batched-stream and edge-cost numbers for one pair (and the protector in its generator's
    slot): every registered link codec, at the context's defaults or tuned per pair (its ``Tuning``), and the
    pair's compressor for the codecs of a latent. ``full`` adds the studies of the default pair's rate–accuracy
    curve: the JPEG and WebP quality sweeps and the 4:2:0 ablation."""
    edge = EdgeImages(TrainedPipeline.load(pair), data, phone_quality)
    link = functools.cache(edge.link)  # a codec by name and settings; the sweeps, tunings and ablation share them
    results = {"pair": pair.name, "protector": pair.protector, "target": pair.target.stem, "aux": pair.aux.stem,
               "privacy": edge.privacy(), "s1": edge.s1()}
    codecs = links_in_measuring_order()
    results |= {result_key(codec): link(codec.name) for codec in codecs if at_defaults(codec)}
    if full:
        results |= sweeps(link)
    for codec in codecs:
        if codec.carries_pixels and codec.tuning is not None:
            tuning = codec.tuning
            reference = link_result(results, codec_named(tuning.reference)).accuracy
            results[result_key(codec)] = lowest_matching_quality(
                lambda value: link(codec.name, **tuning.settings(value)), reference, tuning.values, tuning.tolerance)
    if full:
        results["jpeg_subsampling"] = subsampling_ablation(link, link_result(results, JpegLink))
    compressor, config = compressor_with_config(pair.compressor)
    results[COMPRESSORS] = [edge.neural(compressor, "shipped", BATCH_SIZES, exported_codebook(pair),
                                        **compressor_settings(config, compressor))]
    results["_grid"] = edge.grid_images(compressor, 8)
    measured_at = {codec.name: link_result(results, codec).settings if codec.carries_pixels else {}
                   for codec in measured_links(results)}
    results["edge_ms_per_image"] = edge_ms_per_image(pair.onnx_models, pair.protector, measured_at,
                                                     data.images[:EDGE_COST_IMAGES])
    results["gflops_per_image"] = pair_gflops(pair)
    results["training_hours"] = training_hours(pair)
    return results


def training_hours(pair: ModelPair) -> dict[str, float | None]:
    """Hours behind the protector's model and the compressor its links go through (the target's own training not
    counted: it exists without any protector)."""
    target = frozenset({sha256_file(pair.target)})
    return {"protector": lineage_hours(pair.generator, target), "compressor": lineage_hours(pair.compressor, target)}


def sweeps(link: Callable[..., CodecResult]) -> dict[str, list[CodecResult]]:
    """The rate–accuracy study (of these two codecs by design): JPEG 4:4:4 at every quality it is tuned over,
    lossy WebP at ``WEBP_QUALITIES``."""
    jpeg = JpegLink.tuning
    return {
        "jpeg_sweep": [link(JpegLink.name, **jpeg.settings(quality))
                       for quality in tqdm(jpeg.values, desc="JPEG 4:4:4 sweep")],
        "webp_sweep": [link(WebpLink.name, webp_quality=quality)
                       for quality in tqdm(WEBP_QUALITIES, desc="lossy WebP sweep")],
    }


def subsampling_ablation(link: Callable[..., CodecResult], tuned: CodecResult) -> list[CodecResult]:
    """PMC²'s chroma-subsampling observation: JPEG 4:4:4 beside 4:2:0 at the tuned quality and the paper's."""
    qualities = sorted({tuned.settings["jpeg_quality"], PAPER_SUBSAMPLING_QUALITY})
    return [link(JpegLink.name, jpeg_quality=quality, jpeg_subsampling=subsampling)
            for quality in qualities for subsampling in ("4:4:4", "4:2:0")]


def part_store(args: argparse.Namespace, data: LabelledImages) -> PartStore:
    """Where this run keeps its parts (``--parts``), keyed by every argument but where things are written, the data
    (the public training images too when the attacks run) and ``run_state()``."""
    if args.parts is None:
        return PartStore(None, {}, args.resume)
    arguments = {name: str(value.resolve()) if isinstance(value, Path) else value
                 for name, value in vars(args).items() if name not in NOT_IN_THE_KEY}
    public = load_split(args.data, "train").sha256() if args.attacker_images else None
    key = {**run_state(args.parts), **arguments, "data_sha256": data.sha256(), "public_sha256": public}
    return PartStore(args.parts, key, args.resume)


def measure(args: argparse.Namespace) -> dict:
    """Every part of the report (each pair's measurements, latency, FaceMix, the privacy attacks) and where the
    run stood (``--parts``: which parts an earlier invocation of the same run measured)."""
    data = load_evaluation(args.data)
    if args.limit:
        data = data.subset(slice(0, args.limit))
    if args.attacker_images and args.data is None:
        raise SystemExit("the privacy attacks need the public training images: give --data (or --attacker-images 0)")
    parts = part_store(args, data)
    inverse = InverseAttackConfig(bf16=args.bf16)
    targets = [parts.get(f"target {variant.name}",
                         functools.partial(measure_pair, variant, data, args.phone_quality, full=variant == DEFAULT_PAIR))
               for variant in every_variant()]
    latency = None
    if args.latency_images:
        latency = parts.get("latency", lambda: run_all_modes(data.subset(slice(0, args.latency_images)),
                                                             phone_quality=args.phone_quality))
    facemix = None
    if "facemix" in dict(DEFAULT_PAIR.split_protectors):
        facemix = parts.get("facemix", lambda: measure_facemix(args.data, args.limit, args.attacker_images,
                                                               args.phone_quality, inverse=inverse))
    privacy = None
    if args.attacker_images:
        config = PrivacyConfig(attacker_images=args.attacker_images, phone_quality=args.phone_quality,
                               inverse=inverse, retrain=args.retrain_attacks)
        privacy = parts.get("privacy", lambda: measure_privacy(args.data, args.limit, config))
    return {
        "command": " ".join(["python -m pmc2.evaluation", *sys.argv[1:]]),
        "git_commit": git_commit(),
        "data": "bundled 500-image sample" if args.data is None else str(args.data),
        "images": len(data), "cpu": cpu_model(), "targets": targets, "latency": latency,
        "latency_images": args.latency_images,
        "privacy_attacks": privacy, "facemix": facemix, "parts_taken_back": parts.taken_back,
    }


def recorded_before(folder: Path) -> dict | None:
    """An earlier models' recorded ``results.json``, if there, to show beside this report."""
    path = folder / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_report(results: dict, out: Path, before: Path | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    default = results["targets"][0]
    for target in results["targets"]:
        plots.image_grid(target.pop("_grid"), out / f"privacy_grid_{target['pair']}.png")
    at_their_defaults = [(f"{codec.report_label} ({codec.describe(link_result(default, codec).settings)})",
                          link_result(default, codec)) for codec in links_in_measuring_order() if at_defaults(codec)]
    plots.rate_accuracy(default["jpeg_sweep"], default["webp_sweep"], at_their_defaults, default[COMPRESSORS],
                        default["privacy"]["target_perturbed"], out / "rate_accuracy.png")
    if results["latency"]:
        plots.latency_breakdown(results["latency"], out / "latency.png")
    if results["privacy_attacks"]:
        write_grids(results["privacy_attacks"], out)
    if results["facemix"]:
        write_facemix(results["facemix"], out)
    serialisable = json.loads(json.dumps(results, default=dataclasses.asdict))
    report = render(results)
    before_results = recorded_before(before) if before else None
    if before_results:
        report += "\n" + render_before_after(before_results, serialisable) + "\n"
    (out / "report.md").write_text(report)
    (out / "results.json").write_text(json.dumps(serialisable, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA if SHARED_DATA.exists() else None,
                        help="CIFAR-10 folder; default ../shared/data/cifar10 when present, else the bundled sample")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N evaluation images")
    parser.add_argument("--phone-quality", type=jpeg_quality, default=PHONE_JPEG_QUALITY, help="the phone's JPEG quality (S1)")
    parser.add_argument("--latency-images", type=non_negative_int, default=200,
                        help="images per run through the real servers (0: skip the latency section)")
    parser.add_argument("--attacker-images", type=non_negative_int, default=PrivacyConfig.attacker_images,
                        help="public images the privacy attacks train on (0: skip the privacy attacks)")
    parser.add_argument("--retrain-attacks", action="store_true", help="train the inverse networks again")
    add_bf16_option(parser, InverseAttackConfig().bf16)  # the inverse networks' (the committed report's: under bf16)
    parser.add_argument("--parts", type=Path, default=None,
                        help="keep each part of the run here as it finishes (pmc2.evaluation.resumable)")
    parser.add_argument("--resume", action="store_true", help="continue the run kept in --parts: measure what is missing")
    parser.add_argument("--out", type=Path, default=REPORTS / "evaluation")
    parser.add_argument("--before", type=Path, default=REPORTS / "evaluation" / "before",
                        help="the folder of an earlier models' recorded results.json to show beside this report")
    args = parser.parse_args()
    results = measure(args)
    write_report(results, args.out, args.before)
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()

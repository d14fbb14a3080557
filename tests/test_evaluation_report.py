"""The evaluation command writes a consistent report from the shipped models (small run), and measures and
lists every registered link codec (a codec registered by a test shows up where the shipped ones do)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pmc2.evaluation.__main__ import measure_pair
from pmc2.evaluation.markdown import (PRIVACY_HEADING, PRIVACY_SKIPPED, bandwidth_table, batched_section, goal_sentence,
                                     goals_line, render)
from pmc2.evaluation.measurements import (
    CodecResult, compressor_settings, link_result, lowest_matching_quality,
)
from pmc2.evaluation.resumable import PartStore, code_state
from pmc2.training.compressor import build_compressor
from pmc2.training.evaluate import TrainedPipeline, evaluate, exported_codebook, format_table
from pmc2.training.pairs import DEFAULT_PAIR, every_variant
from pmc2.training.records import lineage_hours, sha256_file
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.compressors import DEFAULT_COMPRESSOR
from pmc2.runtime.link_codecs import LINK_CODECS, LinkCodec, PngLink, codecs_for, register
from pmc2.runtime.model_bundle import ModelBundle


def test_lowest_matching_quality_bisects_to_the_cheapest_jpeg_close_to_png() -> None:
    evaluated = []

    def jpeg_at(quality: int) -> CodecResult:
        evaluated.append(quality)
        return CodecResult("jpeg", 60.0 + 0.5 * (quality - 50), 0.0, 0.0, settings={"quality": quality})

    qualities = range(50, 101)
    assert lowest_matching_quality(jpeg_at, 80.0, qualities).settings["quality"] == 89
    assert len(set(evaluated)) <= 8  # of 51 qualities
    assert lowest_matching_quality(jpeg_at, 99.0, qualities).settings["quality"] == 100


def section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}")[1].split("\n## ")[0]


def table_rows(text: str) -> list[list[str]]:
    """Every table row of ``text`` (header included, the |---| line not), cells stripped."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ")]


def shipped_links() -> list[str]:
    """The registered link codecs that apply to the shipped bundle's compressor (a codebook codec only with a codebook)."""
    return list(codecs_for(ModelBundle.open(), DEFAULT_COMPRESSOR))


def assert_every_codec_is_listed(text: str, protectors: list[str]) -> None:
    """The Table 3 analogue has a bytes and an accuracy column for every codec counted one image per payload,
    and each protector's rows in "Protectors compared" are the registry's links, in its order."""
    header = table_rows(section(text, "Bandwidth and accuracy"))[0]
    for codec in LINK_CODECS.values():
        if codec.evaluated_images_per_stream == 1:
            assert {f"{codec.full_label()} bytes", f"{codec.report_label} acc."} <= set(header), codec.name
    rows = [row for row in table_rows(section(text, "Protectors compared")) if row[0] in protectors]
    for protector in protectors:
        links = [row[1].split(" (")[0] for row in rows if row[0] == protector]
        assert links == shipped_links() * (len(links) // len(shipped_links())) and links, protector


SMALL_RUN = ["--limit", "60", "--latency-images", "6", "--attacker-images", "0"]


def evaluation_run(*arguments: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pmc2.evaluation", *arguments], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


MEASURING = ("phone JPEG (S1)", "JPEG 4:4:4 sweep")  # progress bars of a pair's measurement


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A small run, each part kept in ``parts/`` beside the report as it finishes, and what it printed."""
    out = tmp_path_factory.mktemp("report")
    first = evaluation_run(*SMALL_RUN, "--out", str(out), "--parts", str(out / "parts"))
    return out, first.stderr


@pytest.fixture(scope="module")
def report(measured: tuple[Path, str]) -> Path:
    return measured[0]


def test_a_resumed_run_measures_nothing_again_and_writes_the_same_results(measured: tuple[Path, str],
                                                                           tmp_path: Path) -> None:
    report, printed = measured
    resumed = evaluation_run(*SMALL_RUN, "--out", str(tmp_path), "--parts", str(report / "parts"), "--resume")
    assert all(bar in printed and bar not in resumed.stderr for bar in MEASURING)  # no part measured again
    first, second = (json.loads((folder / "results.json").read_text()) for folder in (report, tmp_path))
    variants = [variant.name for variant in every_variant()]
    assert first.pop("parts_taken_back") == [] and second.pop("parts_taken_back") == [
        *(f"target {name}" for name in variants), "latency", "facemix"]
    assert first.pop("command") != second.pop("command") and first == second  # timings too: nothing measured again
    header, rest = (tmp_path / "report.md").read_text().split("\n", 3)[2:]
    assert "It resumed a run stopped part-way" in header and rest == (report / "report.md").read_text().split("\n", 3)[3]


def test_report_files_and_sections(report: Path) -> None:
    variants = every_variant()
    grids = [f"privacy_grid_{variant.name}.png" for variant in variants]
    for name in ("report.md", "results.json", "rate_accuracy.png", "latency.png", *grids):
        assert (report / name).stat().st_size > 0, name
    text = (report / "report.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    for heading in ("Bandwidth and accuracy", "Batched bitstreams", "JPEG chroma subsampling", "Rate–accuracy",
                    "Privacy under attack", "Protectors compared", "Baselines against their papers",
                    "Latency through the real servers", "Before → after"):
        assert any(line.startswith(f"## {heading}") for line in headings), heading
    # run with --attacker-images 0: the privacy section says it was skipped and why, and no privacy cell has a number
    # (the section with numbers: tests/test_privacy_attacks.py, on a small attacker budget)
    assert f"{PRIVACY_HEADING}\n\n{PRIVACY_SKIPPED}\n\n## Protectors compared" in text
    protector_rows = [line for line in text.split("## Protectors compared")[1].split("\n## ")[0].splitlines()
                      if line.startswith("| ") and not line.startswith("| protector |")]
    assert len(protector_rows) == len(shipped_links()) * len(variants) + 1  # every link per pair and protector, FaceMix
    assert all(line.endswith("| not measured | not measured | not measured |") for line in protector_rows)
    assert_every_codec_is_listed(text, sorted({variant.protector for variant in variants}))


def test_report_numbers_are_consistent(report: Path) -> None:
    results = json.loads((report / "results.json").read_text())
    assert results["images"] == 60
    variants = every_variant()
    assert [(target["pair"], target["protector"]) for target in results["targets"]] == [
        (variant.name, variant.protector) for variant in variants]
    assert ("fastnet+dapter", "dapter") in [(variant.name, variant.protector) for variant in variants]
    default = results["targets"][0]
    qualities = [r["settings"]["jpeg_quality"] for r in default["jpeg_sweep"]]
    assert qualities == list(range(50, 101))
    for target in results["targets"]:
        assert 50 <= target["jpeg_auto"]["settings"]["jpeg_quality"] <= 100
        assert target["webp"]["accuracy"] == pytest.approx(target["png"]["accuracy"])  # both lossless
        costs = target["edge_ms_per_image"]
        assert list(costs) == shipped_links() and min(costs.values()) > 0
        for neural in target["neural"]:
            batched = neural["batched_bytes"]
            # one stream per batch saves the per-stream flush and cannot beat the entropy model's ideal size
            assert neural["ideal_bytes_mean"] - 0.5 <= batched["256"] <= batched["16"] <= neural["bytes_mean"]
    assert [neural["name"] for neural in default["neural"]] == ["shipped"]
    target_weights = frozenset({sha256_file(DEFAULT_PAIR.target)})  # the hours in the shipped checkpoints' records
    assert default["training_hours"] == {"protector": lineage_hours(DEFAULT_PAIR.generator, target_weights),
                                         "compressor": lineage_hours(DEFAULT_PAIR.compressor, target_weights)}
    assert default["training_hours"]["protector"] > 0
    assert results["facemix"]["training_hours"] == lineage_hours(dict(DEFAULT_PAIR.split_protectors)["facemix"],
                                                                 target_weights)


def test_the_baselines_claims_are_judged_on_the_reports_own_numbers(report: Path) -> None:
    results, text = json.loads((report / "results.json").read_text()), (report / "report.md").read_text()
    rows = table_rows(section(text, "Baselines against their papers"))
    dapter = [target for target in results["targets"] if target["protector"] == "dapter"]
    claims = [row for row in rows if row[0] in ("DAPter", "FaceMix")]
    assert len(claims) == 4 * len(dapter) + 2
    for target in dapter:
        mine = [row for row in claims if row[:2] == ["DAPter", f"`{target['target']}`"]]
        png = target["png"]["accuracy"]
        assert mine[0][3] == f"{target['privacy']['target_clean']:.2f}% → {png:.2f}% " \
                             f"({png - target['privacy']['target_clean']:+.2f})"
        assert mine[2][3:] == ["not measured", "not measured"]  # run with --attacker-images 0
    assert claims[-1][3:] == ["not measured", "not measured"]
    assert {"pmc2/neural", "pp-baseline", "pmc2+dapter/png", "pp-baseline+dapter"} <= set(results["latency"])
    assert all(summary["errors"] == 0 for summary in results["latency"].values())


@pytest.fixture
def sixth_codec() -> Iterator[type[LinkCodec]]:
    """A link codec registered after the shipped ones (PNG under another name and wire id), unregistered after."""

    class ThrowawayLink(PngLink):
        name, wire_id, report_label = "throwaway", 14, "Throwaway"

    register(ThrowawayLink)
    yield ThrowawayLink
    del LINK_CODECS[ThrowawayLink.name]


def test_a_registered_codec_is_measured_and_reported_with_the_others(sixth_codec: type[LinkCodec]) -> None:
    data = load_evaluation(None).subset(slice(0, 12))
    target = measure_pair(DEFAULT_PAIR, data, phone_quality=90, full=True)
    assert link_result(target, sixth_codec).accuracy == link_result(target, PngLink).accuracy  # lossless both
    assert list(target["edge_ms_per_image"]) == shipped_links()
    text = render({"command": "test", "git_commit": "test", "images": len(data), "data": "bundled sample",
                   "targets": [target]})
    assert_every_codec_is_listed(text, [DEFAULT_PAIR.protector])
    assert "| Throwaway bytes | Throwaway acc. |" in text


def test_the_training_evaluation_measures_every_registered_codec(sixth_codec: type[LinkCodec]) -> None:
    results = evaluate(TrainedPipeline.load(DEFAULT_PAIR), load_evaluation(None).subset(slice(0, 12)), 95,
                       batch_size=5, codebook=exported_codebook(DEFAULT_PAIR))
    for key in ("accuracy", "bytes_mean", "bytes_std"):  # every codec that applies to the pair's compressor
        assert set(shipped_links()) <= set(results[key]), key
    assert results["accuracy"]["throwaway"] == results["accuracy"]["png"]
    assert results["accuracy"]["neural-batch"] == results["accuracy"]["neural-index"] == results["accuracy"]["neural"]
    # one stream for all 12 images (the batch is 256): the rANS flush paid once, not per image
    assert results["bytes_mean"]["neural-batch"] < results["bytes_mean"]["neural"]
    table = format_table(results)
    assert "edge→cloud Throwaway (lossless)" in table and "edge→cloud JPEG (q95 4:4:4)" in table


def test_a_codec_without_a_report_label_is_refused() -> None:
    class UnlabelledLink(PngLink):
        name, wire_id, report_label = "unlabelled", 15, ""

    with pytest.raises(ValueError, match="report_label"):
        register(UnlabelledLink)
    assert "unlabelled" not in LINK_CODECS


def test_table_3_follows_a_target_the_paper_evaluated_with_the_papers_row() -> None:
    target = measure_pair(DEFAULT_PAIR, load_evaluation(None).subset(slice(0, 12)), phone_quality=90, full=False)
    as_resnet18 = {**target, "target": "resnet18"}  # the same numbers under the name of a target the paper evaluated
    ours, renamed, paper = bandwidth_table([target, as_resnet18]).splitlines()[2:]
    assert renamed.startswith("| resnet18 (compact_resnet) |")
    assert paper.startswith("| paper: resnet18 (vgg13_bn) | 1509.06 / 1509.06 / 1509.06 (png / jpeg / neural) |")
    assert {"2544.70", "90.22%", "1861.48", "90.24%", "8.12", "90.20%"} <= {cell.strip() for cell in paper.split("|")}
    costs = target["gflops_per_image"]
    assert costs["edge"] > costs["target"] > 0  # the generator + g_a cost the edge more than FastNet costs the cloud
    assert f"| {target['privacy']['target_clean']:.2f}% | {costs['edge']:.3f} | {costs['target']:.3f} |" in ours
    assert "≥ 90.20%" in goal_sentence(as_resnet18) and "≥ 90.00%" in goal_sentence(target)
    as_dapter = {**target, "protector": "dapter"}  # another protector's row: judged by its own paper's claims
    assert goals_line([target, as_dapter]).count("B/image at 256 per stream") == 1


def test_a_part_is_measured_once_and_taken_back_only_by_the_same_run(tmp_path: Path) -> None:
    measured = []

    def part(value: int) -> Callable[[], dict]:
        return lambda: measured.append(value) or {"value": value}

    key = {"code": "abc", "limit": 60}
    assert PartStore(tmp_path, key, resume=False).get("target fastnet", part(1)) == {"value": 1}
    resumed = PartStore(tmp_path, key, resume=True)
    assert resumed.get("target fastnet", part(2)) == {"value": 1} and measured == [1]  # kept, not measured again
    assert resumed.get("latency", part(3)) == {"value": 3} and measured == [1, 3]
    with pytest.raises(SystemExit, match="give --resume"):
        PartStore(tmp_path, key, resume=False)
    with pytest.raises(SystemExit, match="its code, limit differ"):
        PartStore(tmp_path, {"code": "def", "limit": 100}, resume=True)
    with pytest.raises(SystemExit, match="holds no run"):
        PartStore(tmp_path / "empty", key, resume=True)
    with pytest.raises(SystemExit, match="give --parts"):
        PartStore(None, {}, resume=True)
    assert PartStore(None, {}, resume=False).get("latency", part(4)) == {"value": 4} and measured == [1, 3, 4]
    with pytest.raises(ZeroDivisionError):
        resumed.get("facemix", lambda: 1 / 0)
    assert resumed.get("facemix", part(5)) == {"value": 5}  # a part that raised was not kept
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "latency.pickle").write_bytes(b"")
    with pytest.raises(SystemExit, match="not empty"):
        PartStore(tmp_path / "other", key, resume=False)


def test_the_code_state_changes_with_tracked_edits_and_untracked_files(tmp_path: Path) -> None:
    def git(*arguments: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "model.py").write_text("a = 1\n")
    git("add", "model.py")
    git("commit", "-q", "-m", "one")
    clean = code_state(tmp_path)
    (tmp_path / "new_checkpoint.pt").write_bytes(b"weights")
    untracked = code_state(tmp_path)
    (tmp_path / "new_checkpoint.pt").write_bytes(b"other weights")
    retrained = code_state(tmp_path)
    (tmp_path / "model.py").write_text("a = 2\n")
    edited = code_state(tmp_path)
    assert len({clean, untracked, retrained, edited}) == 4 and untracked.startswith(clean + "+")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "latency.pickle").write_bytes(b"a part")
    assert code_state(tmp_path, ignoring=tmp_path / "parts") == edited  # the run's own parts are not code


def test_a_compressors_row_names_its_loss_its_size_and_its_transforms_where_not_the_default() -> None:
    settings = {loss: compressor_settings({"n": 64, "m": 96, "loss": loss, "lmbda": 0.01},
                                          build_compressor(8, 8, architecture))
                for loss, architecture in (("task", "factorized"), ("agreement", "residual"))}
    assert "architecture" not in settings["task"] and settings["agreement"]["architecture"] == "residual"
    end_to_end = {"n": 64, "m": 96, "loss": {"rate_weight": 0.02}, "architecture": "feature_unet"}  # its generator's
    assert compressor_settings(end_to_end, build_compressor(8, 8)) == {"loss": "end_to_end", "rate_weight": 0.02,
                                                                       "n": 64, "m": 96}
    results = [CodecResult(name, 68.6, 75.0, 1.0, ideal_bytes_mean=74.0, batched_bytes={256: 70.0}, settings=setting)
               for name, setting in settings.items()]
    target = {"target": "fastnet", "aux": "compact_resnet", "protector": "dapter", "neural": results}
    rows = [line for part in batched_section([target]) for line in part.splitlines() if line.startswith("| fastnet")]
    assert "(rate–distortion + target CE, lmbda=0.01, N/M=64/96)" in rows[0]
    assert ("(rate–distortion + KL to the target's answer on the uncoded image, lmbda=0.01, N/M=64/96, "
            "residual transforms)") in rows[1]

"""The report as Markdown: every table is rendered from the measured results, nothing typed in."""

from __future__ import annotations

from collections.abc import Callable

from pmc2.evaluation.baseline_claims import render_baseline_claims
from pmc2.evaluation.facemix import render_facemix
from pmc2.evaluation.fitted import committed_fit_records, fitted_section
from pmc2.evaluation.latency_table import latency_section
from pmc2.evaluation.measurements import (CodecResult, link_bytes_per_image, link_result, links_in_measuring_order,
                                           measured_links)
from pmc2.evaluation.paper_results import PAPER_TARGETS, PaperLink, PaperTarget
from pmc2.evaluation.table import markdown_table
from pmc2.runtime.link_codecs import LinkCodec, codec_named
from pmc2.runtime.protection import DEFAULT_PROTECTOR


def _size(result: CodecResult) -> str:
    return f"{result.bytes_mean:.2f} ± {result.bytes_std:.2f}"


LOSS_NAMES = {"rd": "rate–distortion", "task": "rate–distortion + target CE",
              "agreement": "rate–distortion + KL to the target's answer on the uncoded image",
              "end_to_end": "end to end with the generator"}
GOAL_ACCURACY, GOAL_BYTES_PER_STREAM, GOAL_BYTES_AT_256 = 90.0, 8.3, 1.0
GOAL_INDEX_RATIO = 1.1  # issue 26's stretch goal: codebook index streams within 10 % of the indexes' entropy
PRIVACY_HEADING = "## Privacy under attack"
PRIVACY_SKIPPED = ("Not measured: this report was generated with `--attacker-images 0`, so no privacy attack ran "
                   "(the protector tables say \"not measured\").")


def _name(target: dict) -> str:
    """A measured row's target (aux), and its protector when it is not PMC²'s perturbation."""
    return f"{target['target']} ({target['aux']})" + ("" if is_generator_row(target) else f" · {target['protector']}")


def _neural_label(result: CodecResult) -> str:
    settings = result.settings
    weight = ", ".join(f"{key}={settings[key]}" for key in ("lmbda", "rate_weight") if key in settings)
    size = f"N/M={settings.get('n')}/{settings.get('m')}"
    transforms = f", {settings['architecture']} transforms" if "architecture" in settings else ""
    return f"{result.name} ({LOSS_NAMES[settings['loss']]}, {weight}, {size}{transforms})"


def is_generator_row(target: dict) -> bool:
    """Whether a measured row is PMC²'s generator's (not another protector's in its slot)."""
    return target.get("protector", DEFAULT_PROTECTOR) == DEFAULT_PROTECTOR


def paper_target(target: dict) -> PaperTarget | None:
    """The paper's row for a measured row's target, when the paper evaluated that target with its generator."""
    return PAPER_TARGETS.get(target["target"]) if is_generator_row(target) else None


def batched_section(targets: list[dict]) -> list[str]:
    """Bytes per image when a micro-batch shares one stream: of the latents' symbols, and of their codebook indexes
    (neural-index) with the stretch goal's verdict against the indexes' own entropy."""
    sizes = list(targets[0]["neural"][0].batched_bytes)

    def indexes(result: CodecResult) -> list[str]:
        return [f"{result.codebook_bytes[size]:.2f}" if size in result.codebook_bytes else "—" for size in sizes]

    def verdict(target: dict) -> str:
        shipped = target["neural"][0]
        if shipped.codebook_entropy_bytes is None or 256 not in shipped.codebook_bytes:
            return f"`{_name(target)}`: no latent codebook."
        if shipped.codebook_entropy_bytes == 0:
            return f"`{_name(target)}`: every image chose the same entry (entropy 0), so no ratio to judge."
        ratio = shipped.codebook_bytes[256] / shipped.codebook_entropy_bytes
        return (f"`{_name(target)}`: {shipped.codebook_bytes[256]:.3f} B/image against the indexes' entropy "
                f"{shipped.codebook_entropy_bytes:.3f} B ({ratio:.2f}×) — {'met' if ratio <= GOAL_INDEX_RATIO else 'not met'}.")

    return [
        "rANS ends every stream with a flush of its state, so one stream per image pays it per image. "
        "Coding a micro-batch as one stream (the latent size is fixed, so the image count is all the framing "
        "needed to split it) pays it once. With a latent codebook every latent is one of its entries, so the batch "
        "can travel as the entries' indexes instead (`neural-index`: one rANS stream, its table the public "
        "training labels' class frequencies); the cloud decodes the very same latents. Bytes per image:",
        markdown_table(
            ["target", "compressor", "1 image/stream", *[f"{size} images/stream" for size in sizes],
             *[f"{size} as indexes" for size in sizes], "ideal", "indexes' entropy", "accuracy"],
            [[_name(t), _neural_label(r), f"{r.bytes_mean:.2f}", *[f"{v:.2f}" for v in r.batched_bytes.values()],
              *indexes(r), f"{r.ideal_bytes_mean:.2f}",
              "—" if r.codebook_entropy_bytes is None else f"{r.codebook_entropy_bytes:.3f}", f"{r.accuracy:.2f}%"]
             for t in targets for r in t["neural"]],
        ),
        f"Stretch goal: index streams at 256 images within {GOAL_INDEX_RATIO - 1:.0%} of the indexes' own entropy. "
        + " ".join(verdict(t) for t in targets),
    ]


def goal_sentence(target: dict) -> str:
    """The goals: neural ≤ 8.3 B/image per stream and ≤ 1 B at 256 per stream, every link at ≥ the paper's neural
    accuracy for that target (≥ 90 % for a target the paper did not evaluate)."""
    png, jpeg, shipped = target["png"], target["jpeg_auto"], target["neural"][0]
    paper = paper_target(target)
    floor = paper.links["neural"].accuracy if paper else GOAL_ACCURACY
    per_image = shipped.bytes_mean <= GOAL_BYTES_PER_STREAM and shipped.accuracy >= floor
    batched = shipped.batched_bytes[256] <= GOAL_BYTES_AT_256 and shipped.accuracy >= floor
    links = min(png.accuracy, jpeg.accuracy) >= floor
    return (f"`{_name(target)}`: neural {shipped.bytes_mean:.2f} B/image at {shipped.accuracy:.2f}% against "
            f"≤ {GOAL_BYTES_PER_STREAM} B at ≥ {floor:.2f}% — {'met' if per_image else 'not met'}; "
            f"{shipped.batched_bytes[256]:.2f} B/image at 256 per stream against ≤ {GOAL_BYTES_AT_256} B — "
            f"{'met' if batched else 'not met'}; PNG {png.accuracy:.2f}% and JPEG {jpeg.accuracy:.2f}% against "
            f"≥ {floor:.2f}% — {'met' if links else 'not met'}.")


def goals_line(targets: list[dict]) -> str:
    """The goals' verdicts for PMC²'s rows; another protector's rows are judged by its own paper's claims."""
    return ("Goals (PMC²'s rows; the other protectors' are judged by their papers' claims under Baselines against their "
            "papers): "
            + " ".join(goal_sentence(t) for t in targets if is_generator_row(t)))


def privacy_view(codec: type[LinkCodec]) -> str:
    """The privacy view (``evaluation.privacy_views``) a link carries: the protected image x' or, for a codec
    of a latent, what the cloud decodes, x̂."""
    return "perturbed" if codec.carries_pixels else "neural"


def bandwidth_links() -> list[type[LinkCodec]]:
    """The links of the Table 3 analogue: every codec counted one image per payload, in measuring order."""
    return [codec for codec in links_in_measuring_order() if codec.evaluated_images_per_stream == 1]


Column = tuple[str, Callable[[CodecResult], str], Callable[[PaperLink], str]]


def _bandwidth_columns(codec: type[LinkCodec]) -> list[Column]:
    """A link's columns in the Table 3 analogue: heading, its cell from our result and from the paper's."""
    label, tuning, blank = codec.report_label, codec.tuning, lambda paper: ""
    columns: list[Column] = []
    if tuning:
        columns.append((f"{label} {tuning.heading}", lambda result: str(result.settings[tuning.setting]), blank))
    columns.append((f"{codec.full_label()} bytes", _size, lambda paper: f"{paper.s2_bytes:.2f}"))
    if not codec.carries_pixels:
        columns.append((f"{label} ideal", lambda result: f"{result.ideal_bytes_mean:.2f}", blank))
    return columns + [(f"{label} acc.", lambda result: f"{result.accuracy:.2f}%", lambda paper: f"{paper.accuracy:.2f}%")]


def bandwidth_table(targets: list[dict]) -> str:
    """One row per measured target, each followed by the paper's row for the same target where it has one."""
    columns = [(codec, column) for codec in bandwidth_links() for column in _bandwidth_columns(codec)]
    rows = []
    for t in targets:
        costs = t.get("gflops_per_image", {})
        rows.append([_name(t), _size(t["s1"]), f"{t['privacy']['target_clean']:.2f}%",
                     *[f"{costs[part]:.3f}" if part in costs else "" for part in ("edge", "target")],
                     *[cell(link_result(t, codec)) for codec, (_, cell, _) in columns]])
        paper = paper_target(t)
        if paper:
            s1 = " / ".join(f"{link.s1_bytes:.2f}" for link in paper.links.values())
            rows.append([f"paper: {t['target']} ({paper.aux})", f"{s1} ({' / '.join(paper.links)})", "", "", "",
                         *[paper_cell(paper.links[codec.name]) if codec.name in paper.links else ""
                           for codec, (_, _, paper_cell) in columns]])
    return markdown_table(["target (aux)", "S1 bytes", "clean acc.", "edge GFLOPs", "target GFLOPs",
                           *[heading for _, (heading, _, _) in columns]], rows)


def _tunings() -> str:
    """How each tuned link's setting is chosen, e.g. "JPEG 4:4:4 quality: the lowest in 50–100 within 0.5 points
    of PNG's accuracy." """
    return " ".join(
        f"{t.label}: the lowest in {t.values[0]}–{t.values[-1]} within {t.tolerance:g} points of "
        f"{codec_named(t.reference).report_label}'s accuracy." for t in (codec.tuning for codec in bandwidth_links()) if t)


def render(results: dict) -> str:
    targets = results["targets"]
    default = targets[0]
    s1 = default["s1"]
    sections = [
        "# PMC² evaluation report",
        f"Generated by `{results['command']}` at commit `{results['git_commit']}` on {results['images']} "
        f"evaluation images ({results['data']}). Target/auxiliary pairs: "
        + ", ".join(f"`{t['target']}`/`{t['aux']}`" for t in targets if is_generator_row(t))
        + ", each with its own generator and compressor (rows marked · dapter put DAPter's converter in the "
        "generator's slot). Every number below is measured by that command; "
        "`results.json` holds them all." + resumed_note(results.get("parts_taken_back")),
        "## Bandwidth and accuracy (PMC² Table 3 analogue)",
        f"S1: the phone's JPEG (quality {s1.settings['quality']}, Pillow defaults) of the original image; "
        "the edge perturbs the decoded S1 image. S2: the perturbed image on the edge→cloud link, bytes as "
        f"mean ± std. {_tunings()} "
        "Neural: the compressor the row's links go through (the pair's, or the protector's own where the pair has one), "
        "one rANS stream per image; ideal = the entropy model's "
        "−log2 likelihood. Clean acc.: the target on the original images. GFLOPs per image (torch's count, 2 per "
        "multiply-add): the edge's protector + g_a, and the target. Each target the PMC² paper evaluated is followed "
        "by the paper's Table 3 row for it (the paper chooses S1 per link: PNG / JPEG / neural).",
        bandwidth_table(targets),
        goals_line(targets),
        "## Batched bitstreams",
        *batched_section(targets),
        "## JPEG chroma subsampling ablation",
        f"Target `{default['target']}`. PMC² saw 91.17% → 11.50% at quality 89 when 4:2:0 was switched on.",
        markdown_table(["subsampling", "quality", "S2 bytes", "accuracy"],
                       [[r.settings["jpeg_subsampling"], str(r.settings["jpeg_quality"]), _size(r), f"{r.accuracy:.2f}%"]
                        for r in default["jpeg_subsampling"]]),
        "## Rate–accuracy",
        f"Target `{default['target']}`: JPEG 4:4:4 at every quality 50–100, lossy WebP at 10–100, and the shipped neural "
        "compressor (filled: one stream per image, hollow: one per 256 images).",
        "![rate–accuracy](rate_accuracy.png)",
        markdown_table(["JPEG 4:4:4 quality", "S2 bytes", "accuracy"],
                       [[str(r.settings["jpeg_quality"]), f"{r.bytes_mean:.1f}", f"{r.accuracy:.2f}%"]
                        for r in default["jpeg_sweep"]
                        if r.settings["jpeg_quality"] % 10 == 0 or r is default["jpeg_sweep"][-1]]),
        "Lossy WebP on the same images:",
        markdown_table(["WebP quality", "S2 bytes", "accuracy"],
                       [[str(r.settings["webp_quality"]), f"{r.bytes_mean:.1f}", f"{r.accuracy:.2f}%"]
                        for r in default["webp_sweep"]]),
        "## Perturbation statistics (proxies, not a privacy measure: see Privacy under attack)",
        markdown_table(["target (aux)", "target clean", "target after S1", "target perturbed", "aux clean", "aux perturbed",
                        "mean abs SSIM(x, x')"],
                       [[_name(t), *[f"{t['privacy'][key]:.2f}%" for key in
                         ("target_clean", "target_after_s1", "target_perturbed", "aux_clean", "aux_perturbed")],
                         f"{t['privacy']['mean_abs_ssim']:.4f}"] for t in targets]),
        *[f"`{_name(t)}`: original / protected (edge) / neural reconstruction (cloud)\n\n"
          f"![privacy grid {t['pair']}](privacy_grid_{t['pair']}.png)" for t in targets],
    ]
    if results.get("privacy_attacks"):
        sections.append(render_privacy(results["privacy_attacks"]))
    else:
        sections += [PRIVACY_HEADING, PRIVACY_SKIPPED]
    sections.append(render_protectors(results))
    if results.get("facemix"):
        sections.append(render_facemix(results["facemix"]))
    sections.append(render_baseline_claims(results))
    sections.append(fitted_section(committed_fit_records()))
    if results.get("latency"):
        sections.append(latency_section(results["latency"], results["latency_images"]))
    return "\n\n".join(sections) + "\n"


def resumed_note(taken_back: list[str] | None) -> str:
    """What the header says of a resumed run's parts that an earlier invocation measured (``--resume``)."""
    if not taken_back:
        return ""
    return (f" It resumed a run stopped part-way (`--parts`): {', '.join(taken_back)} were measured by an earlier "
            "invocation of the same run (same code, models, data, arguments, libraries and machine).")


def _percent(value: float) -> str:
    return f"{value:.1f}%"


def _met(flag: bool) -> str:
    return "✓" if flag else "✗"


def _baseline_row(name: str, baseline: dict, judges: list[str], chance: tuple[str, str]) -> list[str]:
    """A class-mean baseline's row of a privacy table; ``chance``: its two-choice and rank-1 cells."""
    return [name, f"{baseline['psnr_db']:.2f}", f"{baseline['ssim']:.3f}", *[_percent(baseline["judges"][j]) for j in judges],
            "", *chance, ""]


def render_privacy(privacy: dict) -> str:
    """The privacy-attack section: attacker model, per pair and view the attacks beside the label-only baseline."""
    goals = privacy["goals"]
    sections = [
        PRIVACY_HEADING,
        f"Attacker: {privacy['attacker']}. {privacy['evaluation_images']} evaluation images. The cloud learns the "
        "label by design, so each attack is shown next to the **label-only baseline** of its view (the class-mean "
        "image, over the public training set, of the label the cloud returns for that view; the true label's "
        "class-mean image is an oracle row for reference only): the gap between them is what the view leaks beyond "
        "the label. Goals: attack SSIM ≤ "
        f"baseline + {goals['ssim_margin']}, PSNR ≤ baseline + {goals['psnr_margin_db']} dB, two-choice linkability "
        f"≤ {goals['two_choice_max']:.0f}% (the two candidates are images the cloud returns the same label for, so "
        "knowing the label alone scores 50%), judges no better on any view (masked or not) or reconstruction than on the "
        f"baseline image, aux ≤ {goals['aux_max']:.0f}% with and without masking. Because a view may carry the label "
        "legibly (the cloud learns it anyway), the last table asks what each judge's reading adds to the label the "
        "cloud returns: I(judge; true label | cloud label) in bits, beside the same statistic's 95th percentile when "
        "the readings are shuffled among images of one cloud label (chance) and H(true label | cloud label), the most "
        "any reading could add (goal `judges_beyond_label`: no more than chance).",
    ]
    for pair in privacy["pairs"]:
        oracle = pair["label_only_true_label"]
        judges = list(oracle["judges"])
        rows = [_baseline_row("true label's class mean (oracle, not a goal)", oracle, judges, ("", ""))]
        for view, result in pair["views"].items():
            attack, met = result["inverse_attack"], result["goals_met"]
            if "same_as" in result:
                view = f"{view} (the same images as {result['same_as']})"
            rows.append(_baseline_row(f"{view}: label-only baseline (the cloud's label)", result["label_only"], judges,
                                      ("50.0% / 50.0%", "0.1% / 0.1%")))
            rows.append([
                f"{view}: inverse attack", f"{attack['psnr_db']:.2f}", f"{attack['ssim']:.3f}",
                *[_percent(result["judges_on_reconstruction"][j]) for j in judges], "",
                " / ".join(_percent(v) for v in result["two_choice"].values()),
                " / ".join(_percent(v) for v in result["rank1_of_1000"].values()),
                " ".join(f"{name} {_met(flag)}" for name, flag in met.items()),
            ])
            rows.append([
                f"{view}: the view itself", "", "",
                *[f"{_percent(result['classifiers_on_view'][j])} (masked {_percent(result['classifiers_on_view_masked'][j]['best_accuracy'])})"
                  for j in judges],
                f"{_percent(result['classifiers_on_view']['aux'])} (masked "
                f"{_percent(result['classifiers_on_view_masked']['aux']['best_accuracy'])})", "", "", "",
            ])
        beyond = [[view, reading, f"{bits['bits']:.3f}", f"{bits['chance_bits_p95']:.3f}",
                   f"{bits['label_uncertainty_bits']:.3f}"]
                  for view, result in pair["views"].items() if "same_as" not in result
                  for reading, bits in result["judge_bits_beyond_cloud_label"].items()]
        sections += [
            f"### Pair `{pair['pair']}`",
            markdown_table(["what the attacker has", "PSNR dB", "SSIM", *[f"judge {j}" for j in judges], "aux",
                            "two-choice (inverse / view)", "rank-1 of 1,000 (inverse / view)", "goals"], rows),
            markdown_table(["view", "judge reading", "bits beyond the cloud's label", "chance (p95)",
                            "H(label | cloud label)"], beyond),
            f"![privacy attack grid {pair['pair']}](privacy_attack_grid_{pair['pair']}.png)",
        ]
    return "\n\n".join(sections)


def _similarity_cell(attack: dict, baseline: dict) -> str:
    """An attack's SSIM / PSNR, its label-only baseline's in brackets."""
    return f"{attack['ssim']:.3f} / {attack['psnr_db']:.2f} ({baseline['ssim']:.3f} / {baseline['psnr_db']:.2f})"


def _attack_cells(privacy_pair: dict | None, view: str) -> list[str]:
    """Inverse-attack SSIM / PSNR, the judges' best on the view and on its reconstruction, two-choice; each
    beside the view's label-only baseline."""
    if privacy_pair is None:
        return ["not measured"] * 3
    result = privacy_pair["views"][view]
    baseline = result["label_only"]
    judges = list(baseline["judges"])
    return [_similarity_cell(result["inverse_attack"], baseline),
            f"{max(result['classifiers_on_view'][j] for j in judges):.1f}% / "
            f"{max(result['judges_on_reconstruction'][j] for j in judges):.1f}% "
            f"({max(baseline['judges'].values()):.1f}%)",
            " / ".join(_percent(v) for v in result["two_choice"].values())]


def _facemix_row(facemix: dict) -> list[str]:
    """FaceMix in the protector table: its own link (float16 mixtures), scored against each mixture's dominant image."""
    attacks = facemix.get("attacks")
    privacy = ["not measured"] * 3 if attacks is None else [
        _similarity_cell(attacks["inverse_attack"], attacks["label_only"]),
        f"— / {max(attacks['judges_on_reconstruction'].values()):.1f}% "
        f"({max(attacks['label_only']['judges'].values()):.1f}%)", f"{attacks['two_choice_inverse']:.1f}% / —"]
    return ["facemix", "mixed features (float16, batches of up to 256)", f"{facemix['accuracy']:.2f}%",
            f"{facemix['bytes_per_image']['batch of 256']:.2f}", f"{facemix['edge_ms_per_image']:.3f}", *privacy]


def render_protectors(results: dict) -> str:
    """One table per pair: each protector in the generator's slot × each link, with the same attacks."""
    privacy = results.get("privacy_attacks") or {"pairs": []}
    sections = [
        "## Protectors compared",
        "Each protector runs on the edge between the decoded phone image and the edge→cloud link "
        "(`runtime.protection`): PMC²'s protective perturbation and DAPter's converter (trained against the same "
        "target with DAPter's loss: L1 to a flat grey image vs the target's cross-entropy), over the same links "
        "(the neural ones through the pair's compressor, or the protector's own where the pair has trained one), "
        "under the same attacks. Edge ms/image: the shipped ONNX models under "
        f"onnxruntime at batch 256 on {results.get('cpu', 'this CPU')}, protecting and encoding. Privacy columns: "
        "the inverse attack's SSIM / PSNR dB on what the link carries, the independent judges' best accuracy on the "
        "view / on its reconstruction, each with the label-only baseline in brackets (the class-mean image of the "
        "label the cloud returns for what that link carries; FaceMix's: of the label it returns), two-choice "
        "linkability (inverse / view; 50% = nothing beyond the label).",
    ]
    for base in dict.fromkeys(t["target"] for t in results["targets"]):
        group = [t for t in results["targets"] if t["target"] == base]
        rows = []
        for target in group:
            privacy_pair = next((p for p in privacy["pairs"] if p["pair"] == target["pair"]), None)
            for codec in measured_links(target):
                result, name = link_result(target, codec), codec.name
                rows.append([target.get("protector", DEFAULT_PROTECTOR), f"{name} ({codec.describe(result.settings)})",
                             f"{result.accuracy:.2f}%", f"{link_bytes_per_image(target, codec):.2f}",
                             f"{target['edge_ms_per_image'][name]:.3f}" if "edge_ms_per_image" in target else "",
                             *_attack_cells(privacy_pair, privacy_view(codec))])
        facemix = results.get("facemix")
        if facemix and facemix["target"] == base:
            rows.append(_facemix_row(facemix))
        sections += [f"### Target `{base}`",
                     markdown_table(["protector", "link", "accuracy", "bytes/image", "edge ms/image",
                                     "inverse SSIM / PSNR (label-only)", "judges on view / reconstruction (label-only)",
                                     "two-choice"], rows)]
    return "\n\n".join(sections)


def _before_after_rows(before: dict, after: dict, before_privacy: dict | None, after_privacy: dict | None) -> list[list[str]]:
    """One pair's headline numbers, earlier models beside today's (plain data: their results.json files)."""
    def link_numbers(target: dict) -> dict[str, str]:
        neural, jpeg_settings = target["neural"][0], target["jpeg_auto"]["settings"]
        jpeg_quality = jpeg_settings.get("jpeg_quality", jpeg_settings.get("quality"))  # "quality" before the registry
        return {
            "PNG link accuracy": _percent(target["png"]["accuracy"]),
            "JPEG link accuracy (lowest quality within 0.5 points of PNG)":
                f"{_percent(target['jpeg_auto']['accuracy'])} (q{jpeg_quality})",
            "neural accuracy": _percent(neural["accuracy"]),
            "neural B/image, 1 image per stream": f"{neural['bytes_mean']:.2f}",
            **{f"neural B/image, {size} images per stream": f"{value:.2f}" for size, value in neural["batched_bytes"].items()},
            "aux on what the links carry": _percent(target["privacy"]["aux_perturbed"]),
            "mean \\|SSIM(x, x')\\|": f"{target['privacy']['mean_abs_ssim']:.4f}",
        }

    def attack_numbers(pair: dict | None) -> dict[str, str]:
        if pair is None:
            return {}
        numbers = {}
        for view, result in pair["views"].items():
            attack = result["inverse_attack"]
            if "label_only" in result:  # records before the per-view baseline kept only the true label's
                numbers[f"label-only baseline on {view} (the cloud's label): SSIM / PSNR"] = (
                    f"{result['label_only']['ssim']:.3f} / {result['label_only']['psnr_db']:.2f} dB")
            numbers[f"inverse attack on {view}: SSIM / PSNR"] = f"{attack['ssim']:.3f} / {attack['psnr_db']:.2f} dB"
            numbers[f"two-choice linkability on {view} (inverse / view)"] = " / ".join(
                _percent(v) for v in result["two_choice"].values())
        return numbers

    def privacy_of(privacy: dict | None, name: str) -> dict | None:
        return next((pair for pair in privacy["pairs"] if pair["pair"] == name), None) if privacy else None

    old = link_numbers(before) | attack_numbers(privacy_of(before_privacy, before["pair"]))
    new = link_numbers(after) | attack_numbers(privacy_of(after_privacy, after["pair"]))
    return [[name, old.get(name, "not measured"), new.get(name, "not measured")] for name in dict.fromkeys([*old, *new])]


def render_before_after(before: dict, results: dict) -> str:
    """Earlier models' recorded report beside this one, pair by pair (plain data on both sides); privacy rows
    where that report measured the attacks."""
    sections = [
        "## Before → after",
        f"Before: the models of the report generated by `{before['command']}` at commit `{before['git_commit']}` "
        f"on {before['images']} images (kept in `before/results.json`"
        + ("" if before.get("privacy_attacks") else ", which has no privacy attacks") + "). After: this report.",
    ]
    before_privacy, after_privacy = before.get("privacy_attacks"), results.get("privacy_attacks")
    for old in before["targets"]:
        new = next((target for target in results["targets"] if target["pair"] == old["pair"]), None)
        if new is not None:
            sections += [f"### Pair `{old['pair']}`",
                         markdown_table(["", "before", "after"], _before_after_rows(old, new, before_privacy, after_privacy))]
    return "\n\n".join(sections)

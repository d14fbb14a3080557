"""Fitted protectors (``python -m pmc2.fit``) as Markdown: one row per fitting run's record, nothing typed in.

The report's "Fitted protectors" section lists the records committed under ``reports/fit/<run>/fit.json``; after
committing a new one, ``python -m pmc2.evaluation.fitted --write-report`` rewrites that section of
``reports/evaluation/report.md`` in place (the rest of the report needs no new measurement).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pmc2.evaluation.table import markdown_table
from pmc2.evaluation.text_parts import NEXT_SECTION, part_from, rewrite_part
from pmc2.runtime.paths import REPORTS

FIT_RECORDS = REPORTS / "fit"
REPORT = REPORTS / "evaluation" / "report.md"
HEADING = "## Fitted protectors (python -m pmc2.fit)"

HEADER = ["target", "access", "target queries (images)", "S1 acc.", "PNG bytes / acc.", "neural bytes / acc.",
          "256 per stream bytes", "inverse SSIM / PSNR dB (label-only)", "two-choice", "goals", "CPU-hours"]


def queries_cell(record: dict) -> str:
    """Images the target answered over the whole run, interrupted attempts included (0 for white-box access:
    nothing is asked), and of those, the ones asked by stages a ``--redo-from`` set aside."""
    total = record["queries_total"]["images_queried"]
    redone = sum(entry.get("queries", {}).get("images_queried", 0) for entry in record.get("superseded", []))
    return f"{total:,} ({redone:,} in stages redone)" if redone else f"{total:,}"


def cpu_hours(record: dict) -> float:
    """The fitting process's CPU time (every thread, user and system) over every attempt of every stage,
    interrupted and superseded ones included (``python -m pmc2.fit`` refuses to resume a record without it)."""
    attempts = [*record["stages"].values(), *record.get("interrupted", []), *record.get("superseded", [])]
    return sum(attempt["cpu_seconds"] for attempt in attempts) / 3600


def fitted_row(record: dict) -> list[str]:
    row, stages = record["stages"].get("evaluation"), record["stages"]
    if row is None:
        return [record["target"], record["access"], queries_cell(record), *["not yet"] * 7, f"{cpu_hours(record):.2f}"]
    attack = stages.get("attacks")
    attacked = ["not measured"] * 3 if attack is None else [
        f"{attack['inverse_attack']['ssim']:.3f} / {attack['inverse_attack']['psnr_db']:.2f} "
        f"({attack['label_only']['ssim']:.3f} / {attack['label_only']['psnr_db']:.2f})",
        f"{attack['two_choice']['inverse']:.1f}%",
        " ".join(name for name, met in attack["goals_met"].items() if not met) or "all met"]
    if attack is not None and attacked[2] != "all met":
        attacked[2] = f"not met: {attacked[2]}"
    return [record["target"], record["access"], queries_cell(record), f"{row['s1']['accuracy']:.2f}%",
            f"{row['png']['bytes_mean']:.0f} / {row['png']['accuracy']:.2f}%",
            f"{row['neural']['bytes_mean']:.2f} / {row['neural']['accuracy']:.2f}%",
            f"{row['neural-batch']['bytes_mean']:.2f}", *attacked, f"{cpu_hours(record):.2f}"]


def fitted_table(records: list[dict]) -> str:
    return markdown_table(HEADER, [fitted_row(record) for record in records])


def render_fit(record: dict) -> str:
    """One fitting run: its row, the command, where the target was reached, the CPU."""
    evaluated = record["stages"].get("evaluation", {}).get("images", 0)
    return "\n\n".join([
        f"## Fitted protector: `{record['target']}` ({record['access']})",
        fitted_table([record]),
        f"`{record['command']}` at {record['git_commit'][:12]}, {record['cpu']}, {record['threads']} threads; "
        f"target reached as {record['reached_as']}; {evaluated:,} evaluation images, the phone's JPEG in front; "
        "accuracies are the target's own answers for what the cloud decodes (uint8 images, as a PNG link carries).",
    ])


def committed_fit_records(folder: Path = FIT_RECORDS) -> list[dict]:
    """Every ``<run>/fit.json`` under ``folder``, in the order of the runs' names."""
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*/fit.json"))]


def fitted_section(records: list[dict]) -> str:
    """The report's section: the table of every committed fitting run, or a sentence when there is none."""
    if not records:
        return f"{HEADING}\n\nNo fitting run is committed under `reports/fit/` yet."
    return "\n\n".join([
        HEADING,
        "Each row is one run of `python -m pmc2.fit` (its record: `reports/fit/<run>/fit.json`, its command and "
        "machine: `fit.md` beside it), measured on the evaluation images with the phone's JPEG in front. Queries "
        "count the images the target answered over the whole run (0 for white-box access), with those asked by "
        "stages a `--redo-from` ran again; inverse SSIM / PSNR "
        "are the learned inverse attack on the neural view beside the label-only baseline of the target's answers; "
        "CPU-hours are the fitting process's CPU time (all its threads) over every attempt of every stage, "
        "interrupted, killed (as of the last heartbeat) and redone ones included; a cloud's time answering a "
        "black-box fit is the cloud's, not counted here.",
        fitted_table(records),
    ])


def report_section(report: str) -> str:
    """The fitted-protectors section of ``report``: from its heading up to the next section or the end."""
    return part_from(report, HEADING, NEXT_SECTION)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the report's fitted-protectors section from the committed records")
    parser.add_argument("--write-report", action="store_true", help=f"replace the section in {REPORT.relative_to(REPORTS.parent)}")
    args = parser.parse_args()
    section = fitted_section(committed_fit_records())
    if args.write_report:
        rewrite_part(REPORT, HEADING, NEXT_SECTION, section)
    print(section)


if __name__ == "__main__":
    main()

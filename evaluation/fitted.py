"""Fitted protectors (``python -m pmc2.fit``) as Markdown: one row per fitting run's record, nothing typed in."""

from __future__ import annotations

HEADER = ["target", "access", "target queries (images)", "S1 acc.", "PNG bytes / acc.", "neural bytes / acc.",
          "256 per stream bytes", "inverse SSIM / PSNR dB (label-only)", "two-choice", "goals", "CPU-hours"]


def queries(record: dict) -> int:
    """Images the target answered over the whole run, interrupted attempts included (0 for white-box access:
    nothing is asked)."""
    return record["queries_total"]["images_queried"]


def cpu_hours(record: dict) -> float:
    return sum(stage["seconds"] for stage in record["stages"].values()) * record["threads"] / 3600


def fitted_row(record: dict) -> list[str]:
    row, stages = record["stages"].get("evaluation"), record["stages"]
    if row is None:
        return [record["target"], record["access"], f"{queries(record):,}", *["not yet"] * 7, f"{cpu_hours(record):.2f}"]
    attack = stages.get("attacks")
    attacked = ["not measured"] * 3 if attack is None else [
        f"{attack['inverse_attack']['ssim']:.3f} / {attack['inverse_attack']['psnr_db']:.2f} "
        f"({attack['label_only']['ssim']:.3f} / {attack['label_only']['psnr_db']:.2f})",
        f"{attack['two_choice']['inverse']:.1f}%",
        " ".join(name for name, met in attack["goals_met"].items() if not met) or "all met"]
    if attack is not None and attacked[2] != "all met":
        attacked[2] = f"not met: {attacked[2]}"
    return [record["target"], record["access"], f"{queries(record):,}", f"{row['s1']['accuracy']:.2f}%",
            f"{row['png']['bytes_mean']:.0f} / {row['png']['accuracy']:.2f}%",
            f"{row['neural']['bytes_mean']:.2f} / {row['neural']['accuracy']:.2f}%",
            f"{row['neural-batch']['bytes_mean']:.2f}", *attacked, f"{cpu_hours(record):.2f}"]


def fitted_table(records: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    return "\n".join(lines + ["| " + " | ".join(fitted_row(record)) + " |" for record in records])


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


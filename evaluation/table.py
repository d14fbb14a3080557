"""A Markdown table, the one way every report section writes one."""

from __future__ import annotations


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """``header`` and ``rows`` (cells already formatted) as a GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])

"""Generated parts of hand-written files (the README's headline, a report section), found by how they begin."""

from __future__ import annotations

import re
from pathlib import Path

NEXT_SECTION = r"\n+## |\n*\Z"  # where a report section ends: the next "## " heading, or the end of the file


def part_from(text: str, lead: str, until: str) -> str:
    """The part of ``text`` from ``lead`` up to, not including, the first match of the regex ``until``;
    ValueError when ``text`` has no such part."""
    match = re.search(re.escape(lead) + f".*?(?={until})", text, flags=re.DOTALL)
    if match is None:
        raise ValueError(f"no part starting with {lead!r}")
    return match.group(0)


def rewrite_part(path: Path, lead: str, until: str, replacement: str) -> None:
    """Put ``replacement`` in place of the part of the file at ``path`` that ``part_from`` finds."""
    text = path.read_text()
    path.write_text(text.replace(part_from(text, lead, until), replacement))

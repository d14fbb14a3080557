"""Allowed ranges of numbers, checked where they come in: command-line arguments and server configurations.

    parser.add_argument("--limit", type=positive_int)       # "--limit 0" → "argument --limit: 0 is not > 0"
    check_fields(config, {"max_batch_size": POSITIVE})      # ValueError: max_batch_size must be > 0, got 0
    JPEG_QUALITY.require(quality, "JPEG quality")           # ValueError: JPEG quality must be ≥ 1 and ≤ 100, got 150
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Finite numbers from ``low`` to ``high`` (an open end where None); ``low`` itself only if inclusive."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low if self.low_inclusive else value <= self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        bounds = [f"{'≥' if self.low_inclusive else '>'} {self.low}" if self.low is not None else "",
                  f"≤ {self.high}" if self.high is not None else ""]
        return " and ".join(bound for bound in bounds if bound) or "finite"

    def require(self, value: float | None, name: str) -> None:
        """Raise ValueError naming ``name`` when ``value`` (None: unset, allowed) is outside this range."""
        if value is not None and value not in self:
            raise ValueError(f"{name} must be {self}, got {value!r}")

    def argument(self, kind: type[int] | type[float]) -> Callable[[str], int | float]:
        """An argparse ``type``: ``kind(text)``, refused with this range when outside it."""

        def parse(text: str) -> int | float:
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
            if value not in self:
                raise argparse.ArgumentTypeError(f"{text} is not {self}")
            return value

        parse.__name__ = f"{kind.__name__} {self}"
        return parse


POSITIVE = Range(0, low_inclusive=False)
NON_NEGATIVE = Range(0)
JPEG_QUALITY = Range(1, 100)
WEBP_QUALITY = Range(0, 100)
PORT = Range(1, 65535)

positive_int = POSITIVE.argument(int)
non_negative_int = NON_NEGATIVE.argument(int)
positive_float = POSITIVE.argument(float)
non_negative_float = NON_NEGATIVE.argument(float)
jpeg_quality = JPEG_QUALITY.argument(int)
webp_quality = WEBP_QUALITY.argument(int)
port_number = PORT.argument(int)


def check_fields(config: object, ranges: dict[str, Range]) -> None:
    """Raise ValueError naming the first of ``config``'s fields (None: unset, allowed) outside its range."""
    for name, allowed in ranges.items():
        allowed.require(getattr(config, name), name)

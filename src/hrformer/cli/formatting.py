"""Plain-text tables for the commands' reports."""

from __future__ import annotations

from typing import List, Optional


def fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: List[List[str]]) -> str:
    """Columns padded to their widest cell, a rule under the header row."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fields(rows: List[List[str]]) -> str:
    """``name  value`` lines, names padded to the longest."""
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


__all__ = ["fields", "fmt", "table"]

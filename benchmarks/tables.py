"""Markdown pieces the benchmark tables share: mean ± std cells, the command that produced a
table, and one row per method over its seeds."""

from __future__ import annotations

import shlex
import statistics
import sys


def mean_std(values: list[float], digits: int = 4) -> str:
    """``m`` for one value, else ``m ± s`` (sample standard deviation over seeds)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def command_line() -> str:
    """``Command: `python …``` for the running script, quoted as a shell would need it."""
    return f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`"


def seed_rows(rows: dict[str, list[dict]], columns: list[str], digits: int) -> list[str]:
    """``| name | mean ± std per column | median train minutes |`` for each method's runs."""
    lines = []
    for name, runs in rows.items():
        minutes = [r["minutes"] for r in runs if "minutes" in r]
        time_cell = f"{statistics.median(minutes):.1f}" if minutes else "–"
        cells = " | ".join(mean_std([r[c] for r in runs], digits) for c in columns)
        lines.append(f"| {name} | {cells} | {time_cell} |")
    return lines

"""The one table (console and docs/benchmarks.md) and the machine it was measured on."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Row:
    scenario: str
    figure: str
    baseline: str = "-"
    ratio: str = "-"
    target: str = "-"
    met: str = "-"


def ratio_text(value: float) -> str:
    """A ratio to two decimals, cut rather than rounded: a figure that misses a target such
    as 0.50 by a little (0.496) shows as 0.49, never as the target it missed."""
    return f"{math.floor(value * 100 + 1e-9) / 100:.2f}"


HEADER = ("scenario", "figure", "baseline", "ratio", "target", "met?")


def console_table(rows: list[Row]) -> str:
    cells = [HEADER, *[(r.scenario, r.figure, r.baseline, r.ratio, r.target, r.met) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    lines = []
    for index, row in enumerate(cells):
        lines.append(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    for r in rows:
        cells = (r.scenario, r.figure, r.baseline, r.ratio, r.target, r.met)
        lines.append("| " + " | ".join(esc(c) for c in cells) + " |")
    return "\n".join(lines)


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


def machine(load_before: str) -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown memory"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB memory"
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores (nproc), {model}, {memory}; 1-minute load average "
        f"{load_before} before the run, {load_average()} after it; "
        f"Python {platform.python_version()} on {platform.system()} {platform.release()}"
    )


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

"""BENCH_PROFILE=1: py-spy attached to the backend during the closed-loop scenarios.

Two samplers per scenario: `--gil` (which thread holds the GIL, and in which functions: where
the CPU goes) and `--idle` (every thread, waiting included: where the wall-clock time of the
flash desk and the gRPC workers goes). py-spy is not a project dependency; install it into
the virtualenv (`.venv/bin/pip install py-spy`) to use this. Profiling slows the backend a
little, so a profiled run's figures are marked as such in docs/benchmarks.md.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Children

ROLES = (
    ("Desk._run", "desks (flash, tills)"),
    ("BaseEventLoop.run_forever", "gRPC event loop"),
    ("_worker (concurrent/futures/thread.py", "gRPC workers"),
    ("OutboxRelay.run", "relay"),
    ("Projector.run", "projector"),
    ("Sender.run", "kafka producer I/O"),
    ("NetworkSelector.run_forever", "kafka client I/O"),
    ("_serve (grpc/_server.py", "gRPC server loop"),
)
_LINE = re.compile(r":\d+\)")
RATE = 100  # samples per second


def enabled() -> bool:
    return os.environ.get("BENCH_PROFILE", "") not in ("", "0", "false", "no")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Profiles:
    summaries: dict[str, str] = field(default_factory=dict)


def _role(frames: list[str]) -> str:
    for frame in frames:
        for prefix, role in ROLES:
            if frame.startswith(prefix):
                return role
    return "other"


def summarize(raw: Path, expected: float = 0.0, top: int = 8, least: float = 0.03) -> str:
    """Share of samples per thread role, and the heaviest functions (inclusive) of each;
    with `expected` (rate x seconds), how much of the time any thread held the GIL."""
    per_role: Counter[str] = Counter()
    functions: dict[str, Counter[str]] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        role = _role(frames)
        total += samples
        per_role[role] += samples
        seen = functions.setdefault(role, Counter())
        for frame in dict.fromkeys(frames):
            seen[frame] += samples
    if not total:
        return "(no samples)"
    lines = []
    if expected:
        lines.append(
            f"- the GIL was held in {min(100 * total / expected, 100):.0f}% of the samples"
        )
    for role, samples in per_role.most_common():
        if samples < least * total:
            continue
        lines.append(f"- {role}: {100 * samples / total:.1f}% of samples")
        boring = ("Thread.", "_WorkItem.run", "_worker (", "_bootstrap", "_unary_response_in_pool",
                  "_call_behavior", "_guard.", "_run_module", "_run_code")  # fmt: skip
        heavy = [(f, n) for f, n in functions[role].most_common(top + 8)
                 if not f.startswith(boring)][:top]  # fmt: skip
        lines.extend(f"    - {100 * n / total:.1f}% {f}" for f, n in heavy)
    return "\n".join(lines)


@contextmanager
def attached(children: Children, pid: int, name: str, work: Path) -> Iterator[Profiles]:
    profiles = Profiles()
    tool = py_spy() if enabled() else None
    if tool is None:
        if enabled():
            print("[bench] BENCH_PROFILE=1 but py-spy is not installed: no profile", flush=True)
        yield profiles
        return
    started: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
    for kind in ("gil", "idle"):
        out = work / "profiles" / f"{name}-{kind}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        process = children.start(
            [tool, "record", "--pid", str(pid), "--format", "raw", "--rate", str(RATE),
             "--nonblocking", f"--{kind}", "--output", str(out)],
            work / "logs" / f"py-spy-{name}-{kind}.log",
        )  # fmt: skip
        started.append((kind, out, process))
    time.sleep(0.5)  # attached before the load starts
    began = time.monotonic()
    try:
        yield profiles
    finally:
        seconds = time.monotonic() - began + 0.5
        for kind, out, process in started:
            children.stop(process, grace=20)  # SIGINT: py-spy writes what it sampled
            if out.exists():
                if kind == "gil":
                    summary = summarize(out, RATE * seconds)
                else:  # one thread of ~45 is ~2% of the samples: show every role
                    summary = summarize(out, least=0.0)
                profiles.summaries[f"{name} ({kind})"] = summary


class StageProfile:
    """cProfile around the timed part of a single-threaded stage, when asked (`with`)."""

    def __init__(self, wanted: bool) -> None:
        self.profiler = cProfile.Profile() if wanted else None

    def __enter__(self) -> StageProfile:
        if self.profiler is not None:
            self.profiler.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.profiler is not None:
            self.profiler.disable()

    def summary(self, top: int = 18) -> str:
        """The heaviest functions by cumulative time, as shares of the profiled time."""
        if self.profiler is None:
            return ""
        try:
            stats = pstats.Stats(self.profiler)
        except TypeError:  # the stage did not run (pstats refuses an empty profile)
            return ""
        entries: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
        total = max((entry[3] for entry in entries.values()), default=0.0) or 1.0
        heavy = sorted(entries.items(), key=lambda item: item[1][3], reverse=True)
        lines = []
        for (path, _line, function), entry in heavy:
            if "bench" in Path(path).parts or entry[3] >= 0.99 * total:
                continue  # the harness's own frames and the stage's outermost wrappers
            where = "/".join(Path(path).parts[-2:]) if path not in ("~", "") else "builtin"
            lines.append(
                f"- {100 * entry[3] / total:.1f}% cumulative, "
                f"{100 * entry[2] / total:.1f}% own: {function} ({where})"
            )
            if len(lines) == top:
                break
        return "\n".join(lines)

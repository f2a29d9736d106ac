"""What the orchestrator and its worker processes share: child processes, ports, statistics."""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

REPO_ROOT = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(math.ceil(fraction * len(sorted_values)) - 1, 0)
    return sorted_values[min(rank, len(sorted_values) - 1)]


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    values = sorted(latencies_ms)
    return {
        "p50_ms": percentile(values, 0.50),
        "p99_ms": percentile(values, 0.99),
        "max_ms": values[-1] if values else 0.0,
        "count": float(len(values)),
    }


def merged_runs(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Load runs made in parts (bench.load results that kept their latencies) as one run:
    calls, time and outcomes summed, the percentiles over every call, the load's and the
    server's cores weighted by each part's length; `parts` keeps each part's rate and p99."""
    seconds = sum(float(p["seconds"]) for p in parts)
    calls = sum(int(p["calls"]) for p in parts)
    outcomes: Counter[str] = Counter()
    for part in parts:
        outcomes.update(part["outcomes"])
    merged = {k: v for k, v in parts[0].items() if k != "latencies_ms"}
    merged.update(
        calls=calls, seconds=seconds, rate=calls / seconds if seconds else 0.0,
        outcomes=dict(outcomes), dropped=sum(int(p.get("dropped", 0)) for p in parts),
        parts=[{"rate": float(p["rate"]), "p99_ms": float(p["p99_ms"])} for p in parts],
        **latency_summary([v for p in parts for v in p["latencies_ms"]]),
    )  # fmt: skip
    for key in ("load_cores", "server_cores"):
        if seconds and all(key in p for p in parts):
            merged[key] = sum(float(p[key]) * float(p["seconds"]) for p in parts) / seconds
    return merged


def merged_flash(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Flash sales made in parts (bench.load's flash results that kept their latencies) as
    one sale: every part's units over their summed time to sell out."""
    merged = merged_runs(parts)
    sold = [p["sold_out_seconds"] for p in parts]
    units = sum(int(p["units"]) for p in parts)
    every_sold = all(sold)
    merged.update(
        units=units, buyers=sum(int(p["buyers"]) for p in parts),
        confirmed=sum(int(p["confirmed"]) for p in parts),
        sold_out_seconds=sum(sold) if every_sold else None,
        confirmed_per_second=units / sum(sold) if every_sold else 0.0, tenths_at=[],
    )  # fmt: skip
    return merged


def _child_setup() -> None:
    """Runs in each child before exec: it gets SIGTERM if we die, and it sits in a process
    group of its own, so a Ctrl-C at the terminal reaches only us and we stop it in order."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgid(0, 0)


class Children:
    """Every process the benchmark starts, so that all of them are stopped whatever happens."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        args: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | TextIO | None = None,
    ) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(args), cwd=REPO_ROOT, env=env, stdin=stdin,
                stdout=stdout if stdout is not None else out, stderr=out,
                preexec_fn=_child_setup,  # noqa: PLW1509 - parent-death signal and own group
            )  # fmt: skip
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], grace: float = 30.0) -> int:
        """SIGINT (what Ctrl-C would send), then SIGKILL after `grace`; answers the exit code."""
        if process in self._running:
            self._running.remove(process)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return process.returncode

    def stop_all(self) -> None:
        for process in reversed(list(self._running)):
            self.stop(process, grace=20.0)


def run_worker(
    children: Children, module: str, spec: dict[str, Any], log: Path, timeout: float
) -> dict[str, Any]:
    """Runs `python -m module` in a process of its own with `spec` as JSON on stdin, and
    answers the JSON it prints last; killed if it outlives `timeout` seconds."""
    process = children.start(
        [sys.executable, "-m", module], log, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        out, _ = process.communicate(json.dumps(spec).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        children.stop(process, grace=5.0)
        raise TimeoutError(f"{module} {spec.get('mode', '')} ran over {timeout:.0f} s") from None
    children.stop(process)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(
            f"{module} {spec.get('mode', '')} failed ({process.returncode}):\n{tail}"
        )
    lines = [line for line in out.decode().splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{module} {spec.get('mode', '')} printed no result")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def read_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(sys.stdin.read())
    return spec


def write_result(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def left(self) -> float:
        return max(self.at - time.monotonic(), 0.0)

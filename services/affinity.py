"""Which cores the API process keeps its threads on (RETAIL_API_CPUS), and the relay/projector
process beside it.

The API's Python threads (the gRPC event loop, the flash and till desks, the thread pool)
take turns holding one GIL. Left to the scheduler, they are spread over the cores among the
relay/projector process, the broker and the load, and a thread woken on another core than
the GIL's holder waits for it there; kept on one core, they hand it over where it is (the
effect David Beazley showed in "Understanding the Python GIL", PyCon 2010). Measured on the
2-core machine with `retail run` and a warmed broker, in turns (2026-12-01):
- 30,000-unit flash sales at 64 in flight: 1,158 and 1,213 confirmed/s with the threads
  anywhere, 1,453 and 1,418 with the API's on one core, 1,399 and 1,381 with the API's on one
  core and the relay/projector process's on the other;
- POS sales at 64 in flight, end to end: 606 and 595 sales/s anywhere, 547 and 564 with the
  API's threads on one core and the relay/projector's anywhere (it used 0.7 cores, some of
  them on the API's core), 561 and 644 with each on a core of its own; the projection lag's
  p99 at 260 sales/s: 179 and 150 ms anywhere, 172 and 129 ms on cores of their own;
- the baselines do not gain from it: the no-op grpc.aio server, whose threads are mostly
  gRPC's own and need no GIL, lost (2,385 and 2,226 calls/s anywhere, 2,162 and 2,126 on one
  core); the naive and group-commit peers moved within the noise.

`auto` keeps the API's threads on one core, and the relay/projector process on the others,
when that process runs apart and this one may use two cores or more: the API's core is
picked by process id, so several backends on one machine spread out. `off` leaves them to
the system; a list of core numbers (`0` or `2,3`) names the API's cores (the relay/projector
process gets the others, or all of them if none are left).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class AffinityError(ValueError):
    """RETAIL_API_CPUS names something this process cannot use."""


def supported() -> bool:
    return hasattr(os, "sched_getaffinity") and hasattr(os, "sched_setaffinity")


def allowed_cores() -> frozenset[int]:
    """The cores this process may run on (all of them where affinity is not supported)."""
    if not supported():
        return frozenset(range(os.cpu_count() or 1))
    return frozenset(os.sched_getaffinity(0))


def parse(setting: str, allowed: Iterable[int]) -> str | frozenset[int]:
    """RETAIL_API_CPUS as 'auto', 'off' or the cores it names (each one `allowed`)."""
    cores = sorted(allowed)
    choice = setting.strip().lower() or "auto"
    if choice in ("auto", "off"):
        return choice
    try:
        wanted = frozenset(int(part) for part in choice.split(",") if part.strip())
    except ValueError:
        raise AffinityError(
            f"RETAIL_API_CPUS={setting!r}: choose 'auto', 'off' or core numbers such as '0' "
            "or '2,3'"
        ) from None
    if not wanted or not wanted <= set(cores):
        raise AffinityError(
            f"RETAIL_API_CPUS={setting!r}: this process may only use cores {listed(cores)}"
        )
    return wanted


def listed(cores: Iterable[int]) -> str:
    """Cores as RETAIL_API_CPUS names them: '0' or '2,3'."""
    return ",".join(map(str, sorted(cores)))


def api_cores(
    setting: str, allowed: Iterable[int], pid: int, pipeline_apart: bool
) -> frozenset[int] | None:
    """The cores for the API process's threads under `setting`; None leaves them be."""
    cores = sorted(allowed)
    choice = parse(setting, cores)
    if not isinstance(choice, str):
        return choice  # the cores named
    if choice == "auto" and pipeline_apart and len(cores) >= 2:
        return frozenset({cores[pid % len(cores)]})
    return None


def pipeline_cores(allowed: Iterable[int], api: frozenset[int] | None) -> frozenset[int] | None:
    """The cores for the relay/projector process beside an API kept on `api`: the others,
    if there are any; None leaves it on whatever the API process may use."""
    others = frozenset(allowed) - (api or frozenset())
    return others if api and others else None


def keep_threads_on(cores: frozenset[int]) -> int:
    """Moves every thread of this process onto `cores` (threads started later inherit it
    from the thread that starts them); answers how many threads were moved."""
    tasks = Path("/proc/self/task")
    threads = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    moved = 0
    for thread in threads:
        try:
            os.sched_setaffinity(thread, cores)
            moved += 1
        except ProcessLookupError:
            continue  # it ended meanwhile
    return moved

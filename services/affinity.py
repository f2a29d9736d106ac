"""Which cores the API process keeps its threads on (RETAIL_API_CPUS).

The API's Python threads (the gRPC event loop, the flash and till desks, the thread pool)
take turns holding one GIL. Spread over several cores, a thread woken on another core than
the one holding the GIL waits for it there, and the scheduler moves the busy ones about
among the relay/projector process and the broker; kept on one core, they hand it over where
it is. Measured on the 2-core machine with `retail run` and a warmed broker, 30,000-unit
flash sales at 64 in flight, in turns (2026-12-01): 1,158 and 1,213 confirmed/s with the
threads anywhere, 1,453 and 1,418 on one core; the no-op grpc.aio server, whose threads are
mostly gRPC's own and need no GIL, lost by it (2,385 and 2,226 calls/s anywhere, 2,162 and
2,126 on one core), and the bench's naive and group-commit peers moved within the noise
(1,111 / 1,117 and 1,420 / 1,400; 1,834 / 1,897 and 1,993 / 2,044). This is the effect
described in David Beazley's "Understanding the Python GIL" (PyCon 2010): threads of one
process fight over the GIL across cores and hand it over cheaply on one.

`auto` keeps them on one core when the relay and projector run in a process of their own
and this process may use two cores or more: the core is picked by process id, so several
backends on one machine spread out. `off` leaves them to the operating system; a list of
core numbers (`0` or `2,3`) names the cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from services.config import SettingsError


class AffinityError(SettingsError):
    """RETAIL_API_CPUS names something this process cannot use."""


def supported() -> bool:
    return hasattr(os, "sched_getaffinity") and hasattr(os, "sched_setaffinity")


def allowed_cores() -> frozenset[int]:
    """The cores this process may run on (all of them where affinity is not supported)."""
    if not supported():
        return frozenset(range(os.cpu_count() or 1))
    return frozenset(os.sched_getaffinity(0))


def api_cores(
    setting: str, allowed: Iterable[int], pid: int, pipeline_apart: bool
) -> frozenset[int] | None:
    """The cores for the API process's threads under `setting`; None leaves them be."""
    cores = sorted(allowed)
    choice = setting.strip().lower() or "auto"
    if choice == "off":
        return None
    if choice == "auto":
        if not pipeline_apart or len(cores) < 2:
            return None
        return frozenset({cores[pid % len(cores)]})
    try:
        wanted = frozenset(int(part) for part in choice.split(",") if part.strip())
    except ValueError:
        raise AffinityError(
            f"RETAIL_API_CPUS={setting!r}: choose 'auto', 'off' or core numbers such as '0' "
            "or '2,3'"
        ) from None
    if not wanted or not wanted <= set(cores):
        raise AffinityError(
            f"RETAIL_API_CPUS={setting!r}: this process may only use cores "
            f"{','.join(map(str, cores))}"
        )
    return wanted


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

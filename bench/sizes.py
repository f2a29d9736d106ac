"""How big each scenario is: the defaults fit the whole run in about 12 minutes on a 2-core
machine; BENCH_QUICK=1 is a smoke run of a minute or two. BENCH_FLASH_UNITS and friends
override single sizes."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Sizes:
    quick: bool
    concurrency: int  # calls in flight from the load process, every closed-loop scenario
    grpc_workers: int  # the backend's and the baseline servers' thread pools (product default)
    flash_units: int  # N; 2N buyers
    flash_seconds: float  # bound of one flash run
    stock_calls: int  # bound of the closed-loop GetStock run, in calls ...
    stock_seconds: float  # ... and in seconds
    half_load_seconds: float  # the paced runs at half the measured maximum
    pos_terminals: int
    pos_stores: int
    pos_sales: int  # bound of the closed-loop RecordSale run, in sales ...
    pos_seconds: float  # ... and in seconds
    pipeline_seconds: float  # bound of the whole pipeline worker
    rebuild_events: int  # generated events replayed by the rebuild scenario (0: left out)
    split: int  # 1: the flash sale again (N/5) with every role in one process
    warmup_seconds: float  # the broker's warm-up before the first scenario (bench.warmup)

    @property
    def flash_buyers(self) -> int:
        return 2 * self.flash_units

    @property
    def baseline_units(self) -> int:
        """What each baseline sells (the no-op servers and the naive peer in two quarters,
        the group-commit peer at once): half of N."""
        return max(self.flash_units // 2, 1)


FULL = Sizes(
    quick=False, concurrency=64, grpc_workers=32, flash_units=100_000, flash_seconds=600.0,
    stock_calls=200_000, stock_seconds=20.0, half_load_seconds=15.0, pos_terminals=1_000,
    pos_stores=50, pos_sales=100_000, pos_seconds=20.0, pipeline_seconds=420.0, split=1,
    rebuild_events=1_000_000, warmup_seconds=45.0,
)  # fmt: skip
QUICK = replace(
    FULL, quick=True, flash_units=500, flash_seconds=60.0, stock_seconds=4.0,
    half_load_seconds=4.0, pos_seconds=4.0, pipeline_seconds=120.0, rebuild_events=20_000,
    warmup_seconds=5.0,
)  # fmt: skip


def from_env() -> Sizes:
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0", "false", "no")
    sizes = QUICK if quick else FULL
    changes: dict[str, object] = {}
    for f in fields(Sizes):
        raw = os.environ.get(f"BENCH_{f.name.upper()}")
        if raw is None or f.name == "quick":
            continue
        changes[f.name] = float(raw) if isinstance(getattr(sizes, f.name), float) else int(raw)
    return replace(sizes, **changes)  # type: ignore[arg-type]

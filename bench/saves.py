"""The raw eventsourcing baseline: the same stored events the POS scenario wrote, saved again
into a fresh event store of the same kind by the library's recorder, one transaction per sale
(as many events per transaction as the scenario wrote per sale, on average), one writer.

What is left out against the backend: gRPC, the domain (reading aggregates, deciding),
building the events, concurrency. What the ratio shows is how much of a sale's cost is the
store itself.

Spec (JSON on stdin): {"events_db", "work_dir", "first", "last", "sales", "seconds"}; the
events with notification ids first..last are saved again. One JSON line out.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from bench.common import read_spec, write_result
from services.application import RetailApp
from services.config import Settings


def read_events(events_db: str, first: int, last: int) -> list[StoredEvent]:
    with contextlib.closing(sqlite3.connect(f"file:{events_db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events "
            "WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
            (first, last),
        ).fetchall()
    return [StoredEvent(UUID(o), int(v), str(t), bytes(s)) for o, v, t, s in rows]


def save_again(
    events: list[StoredEvent], per_save: int, store_dir: Path, seconds: float
) -> dict[str, Any]:
    store_dir.mkdir(parents=True, exist_ok=True)
    app = RetailApp(env=Settings(data_dir=store_dir).event_store_env())
    try:
        recorder = app.recorder
        saves = 0
        cpu = time.process_time()
        started = time.perf_counter()
        deadline = started + seconds
        for at in range(0, len(events), per_save):
            recorder.insert_events(events[at : at + per_save])
            saves += 1
            if time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        app.close()
    saved = min(saves * per_save, len(events))
    return {
        "events": saved,
        "saves": saves,
        "events_per_save": per_save,
        "seconds": elapsed,
        "saves_per_second": saves / elapsed if elapsed else 0.0,
        "cpu_seconds": cpu,  # this process's CPU time over the timed part
        "events_per_second": saved / elapsed if elapsed else 0.0,
    }


def main() -> None:
    spec = read_spec()
    first, last, sales = int(spec["first"]), int(spec["last"]), int(spec["sales"])
    events = read_events(spec["events_db"], first, last)
    per_save = max(round(len(events) / max(sales, 1)), 1)
    write_result(
        save_again(events, per_save, Path(spec["work_dir"]) / "saves-store", float(spec["seconds"]))
    )


if __name__ == "__main__":
    main()

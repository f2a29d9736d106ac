"""A rebuild split over processes by partition gives the live views, row for row, with its
processes spawned (from this process, which runs threads) or forked (from one without)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from domain.online import ReservedLine
from projections.db import make_engine
from projections.queries import ProgressQueries
from projections.rebuild import _context, differences, rebuild
from services.application import SaleLineInput
from services.bus import topic_names
from services.localkafka import LocalKafka
from services.runtime import Backend

pytestmark = pytest.mark.kafka


# A rebuild from a process of its own, which runs no other thread: its processes are forked.
FORKED = """
import json, sys
from projections.db import make_engine
from projections.rebuild import rebuild
bootstrap, topics, url = json.loads(sys.argv[1])
engine = make_engine(url)
result = rebuild(bootstrap, topics, engine, processes=3)
engine.dispose()
print(json.dumps([result.records, result.applied, result.dead_letters, result.processes]))
"""


def test_processes_are_spawned_from_a_process_running_another_thread() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert _context().get_start_method() == "spawn"
    finally:
        stop.set()
        other.join()


@pytest.mark.parametrize("started", ["spawned", "forked"])
def test_a_rebuild_in_three_processes_equals_the_live_views(
    backend: Backend, kafka_broker: LocalKafka, namespace: str, tmp_path: Path, started: str
) -> None:
    app = backend.app
    assert app is not None and backend.engine is not None
    skus = ("MC26-TINA-PLUSH-30", "MC26-MILO-PLUSH-30", "MC26-TINA-KEYCHAIN")
    for n, sku in enumerate(skus):
        app.receive_stock(sku, "STORE-BJ-0001", 100, f"DN-{n}")
        app.receive_stock(sku, "ONLINE-FLAGSHIP", 100, f"DN-O{n}")
    for n in range(60):
        lines = [SaleLineInput(sku, 1 + n % 2) for sku in skus[: 1 + n % 3]]
        app.record_sale("T-1", f"S-{n}", "STORE-BJ-0001", "", None, lines, [])
    app.record_return("T-1", "S-1", "R-1", {skus[0]: 1}, [], damaged=False)
    for n in range(10):
        placed = app.reserve(f"O-{n}", "", "ONLINE-FLAGSHIP", [ReservedLine(skus[n % 3], 2)])
        if n % 2:
            app.confirm_reservation(f"O-{n}")
    last = app.cancel_reservation("O-0")
    ProgressQueries(backend.engine, backend.settings.consumer_group).wait_for(
        max(placed.position, last.position), timeout=30
    )
    seen: list[tuple[int, int]] = []
    url = f"sqlite:///{tmp_path / 'rebuilt.sqlite'}"
    rebuilt = make_engine(url)
    try:
        if started == "spawned":
            result = rebuild(
                kafka_broker.bootstrap, topic_names(namespace), rebuilt,
                progress=lambda done, total: seen.append((done, total)), processes=3,
            )  # fmt: skip
            records, applied, refused = result.records, result.applied, result.dead_letters
            assert seen[-1][0] == seen[-1][1] == records
            assert result.processes == "spawn"
        else:
            spec = json.dumps([kafka_broker.bootstrap, topic_names(namespace), url])
            out = subprocess.run(
                [sys.executable, "-c", FORKED, spec], capture_output=True, text=True, timeout=120,
                check=True,
            )  # fmt: skip
            records, applied, refused, how = json.loads(out.stdout.splitlines()[-1])
            assert how == "fork"
        assert applied > 200 and refused == 0 and records >= applied
        assert differences(backend.engine, rebuilt) == []
    finally:
        rebuilt.dispose()

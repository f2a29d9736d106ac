"""A rebuild split over processes by partition gives the live views, row for row."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.online import ReservedLine
from projections.db import make_engine
from projections.queries import ProgressQueries
from projections.rebuild import differences, rebuild
from services.application import SaleLineInput
from services.bus import topic_names
from services.localkafka import LocalKafka
from services.runtime import Backend

pytestmark = pytest.mark.kafka


def test_a_rebuild_in_three_processes_equals_the_live_views(
    backend: Backend, kafka_broker: LocalKafka, namespace: str, tmp_path: Path
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
    rebuilt = make_engine(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    try:
        result = rebuild(
            kafka_broker.bootstrap, topic_names(namespace), rebuilt,
            progress=lambda done, total: seen.append((done, total)), processes=3,
        )  # fmt: skip
        assert result.applied > 200 and result.dead_letters == 0
        assert seen[-1][0] == seen[-1][1] == result.records
        assert differences(backend.engine, rebuilt) == []
    finally:
        rebuilt.dispose()

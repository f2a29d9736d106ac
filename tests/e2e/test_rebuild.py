"""Rebuilding the views from Kafka gives the live views, row for row."""

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


def test_a_rebuild_from_the_start_of_the_topics_equals_the_live_views(
    backend: Backend, kafka_broker: LocalKafka, namespace: str, tmp_path: Path
) -> None:
    app = backend.app
    assert app is not None and backend.engine is not None
    app.receive_stock("MC26-TINA-PLUSH-30", "STORE-BJ-0001", 40, "DN-1")
    app.receive_stock("MC26-TINA-PLUSH-30", "ONLINE-FLAGSHIP", 40, "DN-2")
    for n in range(30):
        app.record_sale("T-1", f"S-{n}", "STORE-BJ-0001", "", None,
                        [SaleLineInput("MC26-TINA-PLUSH-30", 1)], [])  # fmt: skip
    app.record_return("T-1", "S-0", "R-0", {"MC26-TINA-PLUSH-30": 1}, [], damaged=True)
    reservation = app.reserve("O-1", "", "ONLINE-FLAGSHIP", [ReservedLine("MC26-TINA-PLUSH-30", 3)])
    ProgressQueries(backend.engine, backend.settings.consumer_group).wait_for(
        reservation.position, timeout=30
    )
    seen: list[tuple[int, int]] = []
    rebuilt = make_engine(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    try:
        result = rebuild(
            kafka_broker.bootstrap, topic_names(namespace), rebuilt,
            progress=lambda done, total: seen.append((done, total)),
        )  # fmt: skip
        assert result.applied > 60 and result.dead_letters == 0
        assert seen[-1][0] == seen[-1][1] == result.records
        assert differences(backend.engine, rebuilt) == []
    finally:
        rebuilt.dispose()

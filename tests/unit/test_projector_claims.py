"""A projector presumed dead that still holds a batch (its group gave the partitions to
another member) must not set the views back when it commits late."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, select

from projections.db import make_engine
from projections.models import AppliedStream, ConsumerOffset, StockView
from projections.projector import HandedRecord, Projector, ProjectorStats, StaleBatchError
from protos.retail.v1 import events_pb2

STREAM = "00000000-0000-4000-8000-000000000001"


def movements(count: int) -> list[HandedRecord]:
    """An item's opening (version 1) and `count` movements, on_hand 10 x version, at offsets
    0..count of one partition."""
    records = []
    for version in range(1, count + 2):
        envelope = events_pb2.EventEnvelope(
            stream_id=STREAM, stream_version=version, position=version, event_id=f"e{version}"
        )
        if version == 1:
            envelope.stock_item_opened.sku, envelope.stock_item_opened.location = "T", "S"
        else:
            envelope.stock_moved.sku, envelope.stock_moved.location = "T", "S"
            envelope.stock_moved.levels.on_hand = 10 * version
        records.append(HandedRecord("stock", 0, version - 1, envelope.SerializeToString()))
    return records


class _Late(Projector):
    """Runs `meanwhile` once it has read the batch's applied versions, before it writes."""

    meanwhile: Callable[[], None] = staticmethod(lambda: None)

    def _applied_versions(self, conn: Connection, streams: set[str]) -> dict[str, int]:
        versions = super()._applied_versions(conn, streams)
        self.meanwhile()
        return versions


def late_batch_sets_nothing_back(engine: Engine) -> None:
    records = movements(5)
    new_owner = Projector(engine, consumer=None, group="g")
    presumed_dead = _Late(engine, consumer=None, group="g")
    try:
        _late_batch(records, new_owner, presumed_dead, engine)
    finally:  # their checkpointing threads
        new_owner.close()
        presumed_dead.close()


def _late_batch(
    records: list[HandedRecord], new_owner: Projector, presumed_dead: _Late, engine: Engine
) -> None:
    presumed_dead.meanwhile = lambda: new_owner.apply(records)
    with pytest.raises(StaleBatchError, match=r"stock\[0\] was committed up to offset 6"):
        presumed_dead.apply(records[:3])  # read before the new owner's commit, written after
    assert presumed_dead.stats == ProjectorStats()  # a batch not written counts nothing
    presumed_dead.meanwhile = lambda: None
    presumed_dead.apply(records)  # read again from the stored offsets: nothing left to do
    assert presumed_dead.stats.duplicates == len(records)
    with engine.connect() as conn:
        on_hand = conn.execute(select(StockView.on_hand)).scalar_one()
        version = conn.execute(select(AppliedStream.version)).scalar_one()
        next_offset = conn.execute(select(ConsumerOffset.next_offset)).scalar_one()
    assert (on_hand, version, next_offset) == (60, 6, 6)
    assert new_owner.stats.applied == len(records)


def test_a_late_batch_of_a_member_presumed_dead_sets_no_view_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/views.sqlite")
    try:
        late_batch_sets_nothing_back(engine)
    finally:
        engine.dispose()


def test_records_below_the_stored_offset_are_dropped_as_applied(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/views.sqlite")
    try:
        projector = Projector(engine, consumer=None, group="g")
        records = movements(3)
        projector.apply(records[:3])
        projector.apply(records)  # offsets 0-2 again (as after a rewind), then 3
        assert (projector.stats.applied, projector.stats.duplicates) == (4, 3)
        with engine.connect() as conn:
            assert conn.execute(select(ConsumerOffset.next_offset)).scalar_one() == 4
            assert conn.execute(select(StockView.on_hand)).scalar_one() == 40
    finally:
        projector.close()
        engine.dispose()

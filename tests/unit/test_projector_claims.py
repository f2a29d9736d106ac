"""A projector presumed dead that still holds a batch (its group gave the partitions to
another member) must not set the views back when it commits late."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, delete, select

from projections.db import make_engine
from projections.models import AppliedStream, ConsumerOffset, StockView
from projections.projector import HandedRecord, Projector, ProjectorStats, StaleBatchError
from protos.retail.v1 import events_pb2

STREAM = "00000000-0000-4000-8000-000000000001"


def movements(count: int, sku: str = "T", first_offset: int = 0) -> list[HandedRecord]:
    """An item's opening (version 1) and `count` movements, on_hand 10 x version, at offsets
    from `first_offset` on one partition."""
    stream = STREAM if sku == "T" else f"{STREAM[:-4]}{sku[-4:]:0>4}"
    records = []
    for version in range(1, count + 2):
        envelope = events_pb2.EventEnvelope(
            stream_id=stream, stream_version=version, position=version, event_id=f"e{version}"
        )
        if version == 1:
            envelope.stock_item_opened.sku, envelope.stock_item_opened.location = sku, "S"
        else:
            envelope.stock_moved.sku, envelope.stock_moved.location = sku, "S"
            envelope.stock_moved.levels.on_hand = 10 * version
        offset = first_offset + version - 1
        records.append(HandedRecord("stock", 0, offset, envelope.SerializeToString()))
    return records


def state(engine: Engine) -> tuple[int, int, int]:
    """The item's on_hand, its stream's applied version and the partition's next offset."""
    with engine.connect() as conn:
        return (
            conn.execute(select(StockView.on_hand).where(StockView.sku == "T")).scalar_one(),
            conn.execute(
                select(AppliedStream.version).where(AppliedStream.stream_id == STREAM)
            ).scalar_one(),
            conn.execute(select(ConsumerOffset.next_offset)).scalar_one(),
        )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """Views in a SQLite file (the checkpointing thread with it, as in production)."""
    engine = make_engine(f"sqlite:///{tmp_path}/views.sqlite")
    yield engine
    engine.dispose()


class _Late(Projector):
    """Runs `meanwhile` at a chosen point of its batch: once it has read the batch's
    applied versions (before its claim), or once it has claimed the partitions."""

    meanwhile: Callable[[], None] = staticmethod(lambda: None)
    after_claim = False

    def _applied_versions(self, conn: Connection, streams: set[str]) -> dict[str, int]:
        versions = super()._applied_versions(conn, streams)
        if not self.after_claim:
            self.meanwhile()
        return versions

    def _claim(self, conn: Connection, *args: Any) -> None:
        super()._claim(conn, *args)
        if self.after_claim:
            self.meanwhile()


def late_batch_sets_nothing_back(engine: Engine) -> None:
    """The other member commits after the late batch was read and before it claims: the
    late batch is refused."""
    records = movements(5)
    new_owner = Projector(engine, consumer=None, group="g")
    presumed_dead = _Late(engine, consumer=None, group="g")
    try:
        presumed_dead.meanwhile = lambda: new_owner.apply(records)
        with pytest.raises(StaleBatchError, match=r"stock\[0\] was committed up to offset 6"):
            presumed_dead.apply(records[:3])  # read before the other's commit, claimed after
        assert presumed_dead.stats == ProjectorStats()  # a batch not written counts nothing
        presumed_dead.meanwhile = lambda: None
        presumed_dead.apply(records)  # read again from the stored offsets: nothing left
        assert presumed_dead.stats.duplicates == len(records)
        assert state(engine) == (60, 6, 6)
        assert new_owner.stats.applied == len(records)
    finally:  # their checkpointing threads
        new_owner.close()
        presumed_dead.close()


def claim_holds_off_the_other_member(engine: Engine) -> None:
    """The other member tries to commit after the late batch claimed its partitions: it
    waits for that commit (the lock), then its own batch is refused and read again."""
    records = movements(5)
    new_owner = Projector(engine, consumer=None, group="g")
    presumed_dead = _Late(engine, consumer=None, group="g")
    presumed_dead.after_claim = True
    for member in (new_owner, presumed_dead):  # as subscribing does: no row made in a batch
        member._register_partitions([("stock", 0)])
    refused: list[BaseException] = []
    threads: list[threading.Thread] = []

    def new_owner_applies() -> None:
        try:
            new_owner.apply(records)
        except StaleBatchError as error:
            refused.append(error)

    def meanwhile() -> None:  # in a thread of its own: it has to wait for this batch
        thread = threading.Thread(target=new_owner_applies)
        thread.start()
        threads.append(thread)
        thread.join(0.5)

    presumed_dead.meanwhile = meanwhile
    try:
        presumed_dead.apply(records[:3])
        threads[0].join(30)
        assert len(refused) == 1  # without the lock it commits inside the window
        assert state(engine) == (30, 3, 3)  # the late batch, committed first, is not lost
        new_owner.apply(records)  # read again from the stored offsets, as `run` does
        assert state(engine) == (60, 6, 6)
        assert new_owner.stats.duplicates == 3
    finally:
        new_owner.close()
        presumed_dead.close()


def test_a_late_batch_of_a_member_presumed_dead_sets_no_view_back(engine: Engine) -> None:
    late_batch_sets_nothing_back(engine)


def test_a_claimed_partition_holds_off_the_other_members_commit(engine: Engine) -> None:
    claim_holds_off_the_other_member(engine)


def test_records_below_the_stored_offset_leave_it_where_it_is(engine: Engine) -> None:
    """A member that polled records before another committed past them: they are dropped,
    and the stored offset does not go back to theirs."""
    first, late = Projector(engine, None, "g"), Projector(engine, None, "g")
    try:
        records = movements(5)
        first.apply(records)
        late.apply(records[:3])
        assert (late.stats.applied, late.stats.duplicates) == (0, 3)
        assert state(engine) == (60, 6, 6)
    finally:
        first.close()
        late.close()


class _Consumer:
    """What the projector asks of its consumer here: a partition's end."""

    def __init__(self, end: int) -> None:
        self.end = end

    def highwater(self, partition: object) -> int:
        return self.end

    def close(self) -> None:
        pass


def test_a_partition_whose_log_starts_over_is_applied_again(engine: Engine) -> None:
    """The topic made again (a local broker's data wiped, the views kept): its new records
    are below the stored offset but new; the log's end says so, and they are applied."""
    before = Projector(engine, None, "g")
    after = Projector(engine, _Consumer(end=2), "g")
    try:
        before.apply(movements(5))
        after.apply(movements(1, sku="K-0002"))  # offsets 0 and 1 of the new log
        assert (after.stats.applied, after.stats.duplicates) == (2, 0)
        with engine.connect() as conn:
            assert (
                conn.execute(
                    select(StockView.on_hand).where(StockView.sku == "K-0002")
                ).scalar_one()
                == 20
            )
            assert conn.execute(select(ConsumerOffset.next_offset)).scalar_one() == 2
    finally:
        before.close()
        after.close()


def test_an_offset_row_deleted_meanwhile_is_made_again_and_claimed(engine: Engine) -> None:
    """An operator deleted the group's rows (to replay) while the projector ran: its next
    batch makes the partition's row again and stores its offset there."""
    projector = Projector(engine, None, "g")
    try:
        records = movements(5)
        projector.apply(records[:3])
        with engine.begin() as conn:
            conn.execute(delete(ConsumerOffset))
        projector.apply(records[3:])
        assert state(engine) == (60, 6, 6)
    finally:
        projector.close()

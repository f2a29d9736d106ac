"""However records are cut into batches, and however often one is delivered again, the
views end as if each event had been applied once, in order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from projections.db import make_engine
from projections.models import AppliedStream, SalesFact, StockView
from projections.projector import HandedRecord, Projector
from protos.retail.v1 import events_pb2

ITEMS = [("TINA-30", "STORE-1"), ("TINA-30", "STORE-2"), ("KEY-01", "STORE-1")]


def _stream(item: int) -> str:
    return f"00000000-0000-4000-8000-00000000000{item}"


def _events(moves: list[tuple[int, int]]) -> list[HandedRecord]:
    """Each item's opening, then the movements (item, on_hand after), then a sale."""
    records: list[HandedRecord] = []
    versions = dict.fromkeys(range(len(ITEMS)), 0)

    def emit(envelope: events_pb2.EventEnvelope) -> None:
        envelope.position = len(records) + 1
        envelope.event_id = f"event-{envelope.position}"
        records.append(HandedRecord("stock", 0, len(records), envelope.SerializeToString()))

    for item, (sku, location) in enumerate(ITEMS):
        versions[item] += 1
        opened = events_pb2.EventEnvelope(stream_id=_stream(item), stream_version=1)
        opened.stock_item_opened.CopyFrom(events_pb2.StockItemOpened(sku=sku, location=location))
        emit(opened)
    for item, on_hand in moves:
        versions[item] += 1
        sku, location = ITEMS[item]
        moved = events_pb2.EventEnvelope(stream_id=_stream(item), stream_version=versions[item])
        moved.stock_moved.CopyFrom(
            events_pb2.StockMoved(
                sku=sku, location=location, quantity=1,
                levels=events_pb2.StockLevels(on_hand=on_hand, available=on_hand),
            )
        )  # fmt: skip
        emit(moved)
    sale = events_pb2.EventEnvelope(stream_id="sale-1", stream_version=1)
    sale.sale_recorded.sale_id = "sale-1"
    sale.sale_recorded.lines.add(sku="TINA-30", quantity=2)
    emit(sale)
    return records


@pytest.mark.parametrize("fresh", [False, True])
@settings(max_examples=60, deadline=None)
@given(
    moves=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 50)), max_size=30),
    cuts=st.lists(st.integers(1, 40), max_size=8),
    again=st.lists(st.integers(0, 60), max_size=5),
)
def test_batches_and_redeliveries_end_in_the_last_levels_of_each_item(
    fresh: bool, moves: list[tuple[int, int]], cuts: list[int], again: list[int]
) -> None:
    """Also for a rebuild's projector (`fresh`), which keeps the applied versions in memory
    and stores them once at the end."""
    records = _events(moves)
    # Some records delivered a second time, later, as after a relay's crash before it recorded:
    # sent again, so at offsets of their own after the others.
    delivered = records + [
        records[i % len(records)]._replace(offset=len(records) + k) for k, i in enumerate(again)
    ]
    engine = make_engine("sqlite://")
    projector = Projector(engine, consumer=None, group="g", fresh=fresh)
    start = 0
    for cut in [*cuts, len(delivered)]:
        if start < len(delivered):
            projector.apply(delivered[start : start + cut])
            start += cut
    while start < len(delivered):
        projector.apply(delivered[start : start + 50])
        start += 50
    projector.write_versions()
    expected = dict.fromkeys(ITEMS, 0)
    for item, on_hand in moves:
        expected[ITEMS[item]] = on_hand
    with engine.connect() as conn:
        stock = {(s, loc): n for s, loc, n in conn.execute(
            select(StockView.sku, StockView.location, StockView.on_hand))}  # fmt: skip
        versions = {
            stream: version
            for stream, version in conn.execute(
                select(AppliedStream.stream_id, AppliedStream.version)
            )
        }
        units = conn.execute(select(SalesFact.units)).scalars().all()
    engine.dispose()
    assert stock == expected
    assert projector.stats.applied == len(records)
    assert projector.stats.duplicates == len(again)
    assert units == [2]  # the sale's line once, however often it came
    for item in range(len(ITEMS)):
        assert versions[_stream(item)] == 1 + sum(1 for i, _ in moves if i == item)


class _Letters:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    def send(self, record: HandedRecord, reason: str) -> None:
        self.sent.append((record.offset, reason))


def test_a_record_whose_rows_cannot_be_built_is_a_dead_letter_and_the_rest_applies(
    tmp_path: object,
) -> None:
    """A sale whose local day is past the year 9999, and an item's last movement of the
    batch with a time out of range: each goes to the dead letters with its reason, the
    others in the batch apply, and the movement sent again once fixed is applied."""
    records = _events([(0, 5), (1, 7)])  # openings 0-2, movements 3-4, a sale 5
    bad_sale = events_pb2.EventEnvelope(stream_id="sale-2", stream_version=1, position=7)
    bad_sale.sale_recorded.sale_id = "sale-2"
    bad_sale.occurred_at.FromSeconds(253402300799 - 3600)  # 9999-12-31T23:00Z
    bad_move = events_pb2.EventEnvelope.FromString(records[3].value)
    bad_move.stream_version, bad_move.position = 3, 8
    bad_move.stock_moved.levels.on_hand = 9
    good_move = events_pb2.EventEnvelope()
    good_move.CopyFrom(bad_move)
    bad_move.recorded_at.seconds = 10**15  # far past what a datetime holds
    records += [
        HandedRecord("stock", 0, 6, bad_sale.SerializeToString()),
        HandedRecord("stock", 0, 7, bad_move.SerializeToString()),
    ]
    letters = _Letters()
    engine = make_engine(f"sqlite:///{tmp_path}/views.sqlite")
    projector = Projector(engine, consumer=None, group="g", dead_letters=letters)  # type: ignore[arg-type]
    projector.apply(records)
    assert [offset for offset, _ in letters.sent] == [6, 7]
    assert all(reason.startswith("OverflowError") for _, reason in letters.sent)
    projector.apply([HandedRecord("stock", 0, 8, good_move.SerializeToString())])

    with engine.connect() as conn:
        stock = {(s, loc): n for s, loc, n in conn.execute(
            select(StockView.sku, StockView.location, StockView.on_hand))}  # fmt: skip
        units = conn.execute(select(SalesFact.units)).scalars().all()
    projector.close()
    engine.dispose()
    assert stock == {ITEMS[0]: 9, ITEMS[1]: 7, ITEMS[2]: 0}
    assert units == [2]
    assert projector.stats.rejected == 2

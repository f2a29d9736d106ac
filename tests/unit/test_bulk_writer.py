"""The projector's bulk statements store what SQLAlchemy Core's upsert would store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import sqlite

from projections.builders import FACT_OWN, FACT_SHARED, Facts
from projections.db import BulkWriter, make_engine, select_versions
from projections.models import Base, ConsumerOffset, SalesFact, StockView
from projections.projector import FACT_EVENTS, FACT_LINES, write_facts

TABLES = Base.metadata.tables
STOCK, SHIFT, OFFSETS = TABLES["stock_view"], TABLES["shift_view"], TABLES["consumer_offset"]
AT = datetime(2026, 2, 6, 4, 5, 6, 789, tzinfo=UTC)


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    bulk, core = (
        make_engine(f"sqlite:///{tmp_path / 'a.db'}"),
        make_engine(f"sqlite:///{tmp_path / 'b.db'}"),
    )
    yield bulk, core
    bulk.dispose()
    core.dispose()


def _stock(on_hand: int, position: int) -> dict[str, Any]:
    return {"sku": "TINA-30", "location": "STORE-1", "on_hand": on_hand, "reserved": 1,
            "safety_stock": 0, "unavailable": 0, "incoming": 0, "allocated": 0,
            "available": on_hand - 1, "position": position, "updated_at": AT}  # fmt: skip


def _everything(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            name: sorted(tuple(row) for row in conn.execute(select(table)).all())
            for name, table in Base.metadata.tables.items()
        }


def test_upserts_and_updates_read_back_as_core_writes_them(
    engines: tuple[Engine, Engine],
) -> None:
    bulk_engine, core_engine = engines
    writer = BulkWriter(bulk_engine.dialect)
    opened = {"terminal": "T-1", "shift_id": "S-1", "location": "STORE-1",
              "cash_float_minor": 5000, "currency": "CNY"}  # fmt: skip
    with bulk_engine.begin() as conn:
        writer.upsert(conn, STOCK, [_stock(10, 1)])
        writer.upsert(conn, STOCK, [_stock(7, 2)])  # the newer row wins
        writer.upsert(conn, SHIFT, [opened])  # closed, counted cash, z report: defaults
        writer.update(conn, SHIFT, [{"terminal": "T-1", "shift_id": "S-1", "closed": True}])
    with core_engine.begin() as conn:
        for row in (_stock(10, 1), _stock(7, 2)):
            insert = sqlite.insert(STOCK)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["sku", "location"],
                    set_={k: insert.excluded[k] for k in row if k not in ("sku", "location")},
                ),
                [row],
            )
        conn.execute(sqlite.insert(SHIFT), [opened])
        conn.execute(
            SHIFT.update()
            .where(SHIFT.c.terminal == "T-1", SHIFT.c.shift_id == "S-1")
            .values(closed=True)
        )
    assert _everything(bulk_engine) == _everything(core_engine)
    with bulk_engine.connect() as conn:
        stock = conn.execute(select(StockView)).one()
        assert (stock.on_hand, stock.position, stock.updated_at) == (7, 2, AT.replace(tzinfo=None))


def test_a_column_kept_at_its_highest_never_goes_back(engines: tuple[Engine, Engine]) -> None:
    engine, _ = engines
    writer = BulkWriter(engine.dialect)

    def progress(next_offset: int, position: int) -> dict[str, Any]:
        return {"consumer_group": "g", "topic": "t", "partition": 0, "position": position,
                "next_offset": next_offset, "end_offset": next_offset}  # fmt: skip

    with engine.begin() as conn:
        writer.upsert(conn, OFFSETS, [progress(5, 40)], keep_highest=("position",))
        writer.upsert(conn, OFFSETS, [progress(9, 30)], keep_highest=("position",))
    with engine.connect() as conn:
        row = conn.execute(select(ConsumerOffset)).one()
    assert (row.next_offset, row.position) == (9, 40)


def test_versions_are_read_back_for_the_streams_that_have_one(
    engines: tuple[Engine, Engine],
) -> None:
    engine, _ = engines
    writer = BulkWriter(engine.dialect)
    table = TABLES["applied_stream"]
    with engine.begin() as conn:
        writer.upsert(conn, table, [{"stream_id": f"s{n}", "version": n} for n in range(1, 1200)])
        found = select_versions(conn, ["s1", "s700", "s1199", "missing"], chunk=2)
    assert found == {"s1": 1, "s700": 700, "s1199": 1199}


def _core_facts(conn: Connection, facts: list[Facts]) -> None:
    """The facts' rows as Core inserts them, by column name."""
    events = [dict(zip(FACT_SHARED, f.shared, strict=True)) for f in facts if f.own]
    lines = [
        {"ids": f.shared[0], **dict(zip(FACT_OWN, own, strict=True))}
        for f in facts
        for own in f.own
    ]
    conn.execute(sqlite.insert(FACT_EVENTS), events)
    conn.execute(sqlite.insert(FACT_LINES), lines)


def _view(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(SalesFact).order_by(SalesFact.id))]


def test_facts_in_groups_read_back_as_core_writes_them_as_named_rows(
    engines: tuple[Engine, Engine],
) -> None:
    def shared(ids: str, late: bool, position: int) -> tuple[Any, ...]:
        return (ids, "online", "FLAGSHIP", "online", "Dongcheng", "", "", AT, "2026-02-06",
                "2026-02-06T12", late, position)  # fmt: skip

    def own(line: int, sale: str, units: int) -> tuple[Any, ...]:
        gross = 12800 * units
        return line, sale, "TINA-30", "", units, gross, 0, gross, 1473 * units, "CNY"

    groups = [
        Facts([own(0, "F-1", 1), own(1, "F-2", 3)], shared("1/", False, 1)),
        Facts([own(0, "F-3", 2)], shared("2/", True, 2)),
        Facts([], shared("3/", False, 3)),
    ]
    bulk_engine, core_engine = engines
    with bulk_engine.begin() as conn:
        write_facts(BulkWriter(bulk_engine.dialect), conn, groups)
    with core_engine.begin() as conn:
        _core_facts(conn, groups)
    assert _everything(bulk_engine) == _everything(core_engine)
    facts = _view(bulk_engine)
    naive = AT.replace(tzinfo=None)  # SQLite keeps no offset: UTC by convention
    assert facts == [{**row, "occurred_at": naive} for group in groups for row in group.rows()]
    assert [f["id"] for f in facts] == ["1/0", "1/1", "2/0"]
    assert sorted(FACT_OWN + FACT_SHARED[:1]) == sorted(c.name for c in FACT_LINES.columns)
    assert sorted(FACT_SHARED) == sorted(c.name for c in FACT_EVENTS.columns)


def test_a_group_larger_than_one_statement_and_a_fact_written_again(
    engines: tuple[Engine, Engine],
) -> None:
    def shared(ids: str, position: int) -> tuple[Any, ...]:
        return (ids, "online", "FLAGSHIP", "online", "Dongcheng", "", "", AT, "2026-02-06",
                "2026-02-06T12", False, position)  # fmt: skip

    def own(line: int, units: int) -> tuple[Any, ...]:
        return line, f"F-{line}", "TINA-30", "", units, 12800 * units, 0, 12800 * units, 9, "CNY"

    bulk_engine, core_engine = engines
    writer = BulkWriter(bulk_engine.dialect)
    size = writer.MAX_GROUP_ROWS
    big = Facts([own(n, 1) for n in range(2 * size + 3)], shared("1/", 1))
    again = Facts([own(0, 5)], shared("1/", 1))  # stored already: left as it is
    other = Facts([own(0, 2)], shared("2/", 2))
    with bulk_engine.begin() as conn:
        write_facts(writer, conn, [big])
        write_facts(writer, conn, [again, other])
    with core_engine.begin() as conn:
        _core_facts(conn, [big, other])
    assert _everything(bulk_engine) == _everything(core_engine)
    stored = _view(bulk_engine)
    assert len(stored) == 2 * size + 4
    assert stored[0]["units"] == 1

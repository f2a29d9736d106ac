"""How the views are stored on SQLite: the log checkpointed off the projector's commits, the
fast DateTime text equal to SQLAlchemy's, and indexes no query uses dropped on upgrade."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime, create_engine, inspect
from sqlalchemy.dialects import sqlite

from projections.db import (
    WalCheckpointer,
    _sqlite_datetime,
    create_schema,
    drop_schema,
    make_engine,
)
from projections.models import RETIRED_INDEXES, Base
from projections.projector import HandedRecord, Projector
from protos.retail.v1 import events_pb2


def _sqlalchemys() -> Callable[[Any], Any]:
    process = DateTime(timezone=True).dialect_impl(DIALECT).bind_processor(DIALECT)
    assert process is not None
    return process


DIALECT = sqlite.dialect()
SQLALCHEMY_DATETIME = _sqlalchemys()


@given(
    st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=8))])),
)
def test_the_fast_datetime_text_is_the_one_sqlalchemy_stores(moment: datetime) -> None:
    assert _sqlite_datetime(SQLALCHEMY_DATETIME)(moment) == SQLALCHEMY_DATETIME(moment)


def test_what_is_not_a_datetime_goes_to_sqlalchemys_processor() -> None:
    fast = _sqlite_datetime(SQLALCHEMY_DATETIME)
    assert fast(None) is None
    assert fast(datetime(2026, 2, 6).date()) == "2026-02-06 00:00:00.000000"
    with pytest.raises(TypeError):
        fast("2026-02-06")


def _movements(count: int, start: int = 1) -> list[HandedRecord]:
    """`count` stock movements of one item, each with a payload large enough to fill pages."""
    records = []
    for version in range(start, start + count):
        envelope = events_pb2.EventEnvelope(
            event_id=f"e-{version}", stream_id=f"item-{version % 500}",
            stream_version=(version - 1) // 500 + 1, position=version,
        )  # fmt: skip
        envelope.stock_moved.CopyFrom(
            events_pb2.StockMoved(
                sku=f"SKU-{version % 500:04d}-{'x' * 40}", location="STORE-1", quantity=1,
                levels=events_pb2.StockLevels(on_hand=version),
            )
        )  # fmt: skip
        records.append(HandedRecord("stock", 0, version - 1, envelope.SerializeToString()))
    return records


def test_the_projector_leaves_checkpoints_to_a_thread_that_keeps_the_log_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WalCheckpointer, "RESTART_PAGES", 50)
    monkeypatch.setattr(WalCheckpointer, "LOG_LIMIT", 64 * 4096)
    engine = make_engine(f"sqlite:///{tmp_path / 'views.db'}")
    projector = Projector(engine, consumer=None, group="g")
    checkpointer = projector.checkpointer
    assert checkpointer is not None
    checkpointer.every = 0.01
    try:
        records = _movements(20_000)
        for start in range(0, len(records), 500):  # a writer that never pauses
            projector.apply(records[start : start + 500])
        with engine.connect() as conn:
            # The projector's own connection no longer checkpoints inside its commits.
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        deadline = time.monotonic() + 10
        while checkpointer.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.checkpoints > 0 and checkpointer.restarts > 0
        # A tick that began after the last write has copied every frame (nobody writes now):
        # the next write starts the log over, which truncates it to the limit. Without this
        # wait the write could come before that tick (failed once in CI: 366,712 bytes).
        ticks = checkpointer.checkpoints
        while checkpointer.checkpoints < ticks + 2 and time.monotonic() < deadline + 10:
            time.sleep(0.01)
        projector.apply(_movements(10, start=20_001))  # a write after it truncates the log
        wal = tmp_path / "views.db-wal"
        assert wal.stat().st_size <= 64 * 4096 + 64 * 1024  # the limit, plus this batch
    finally:
        projector.close()
        engine.dispose()
    assert not any(t.name == "wal-checkpoint" for t in threading.enumerate())
    with sqlite3.connect(tmp_path / "views.db") as conn:
        assert conn.execute("SELECT count(*) FROM stock_view").fetchone()[0] == 500


def test_engines_that_are_not_sqlite_files_get_no_checkpointer() -> None:
    memory = create_engine("sqlite://")
    assert WalCheckpointer.for_engine(memory) is None
    memory.dispose()


# The sales facts' table as versions before fact_event and fact_line made it.
WIDE_FACTS = """CREATE TABLE sales_fact (
    id VARCHAR(80) NOT NULL, kind VARCHAR(16) NOT NULL, sale_id VARCHAR(64) NOT NULL,
    location VARCHAR(64) NOT NULL, channel VARCHAR(16) NOT NULL, district VARCHAR(100) NOT NULL,
    terminal VARCHAR(64) NOT NULL, shift_id VARCHAR(64) NOT NULL, sku VARCHAR(64) NOT NULL,
    campaign VARCHAR(64) NOT NULL, units BIGINT NOT NULL, gross_minor BIGINT NOT NULL,
    discount_minor BIGINT NOT NULL, net_minor BIGINT NOT NULL, tax_minor BIGINT NOT NULL,
    currency VARCHAR(3) NOT NULL, occurred_at DATETIME NOT NULL, business_day VARCHAR(10) NOT NULL,
    local_hour VARCHAR(13) NOT NULL, late BOOLEAN NOT NULL, position BIGINT NOT NULL,
    PRIMARY KEY (id))"""


def _wide_fact(ids: str, line: int, sku: str, units: int, position: int) -> tuple[Any, ...]:
    return (f"{ids}{line}", "sale", f"S-{position}", "STORE-1", "store", "Dongcheng", "T-1",
            "SH-1", sku, "", units, 100 * units, 0, 100 * units, 12 * units, "CNY",
            "2026-02-06 04:05:06.000789", "2026-02-06", "2026-02-06T12", 0, position)  # fmt: skip


def test_an_old_database_keeps_its_facts_and_loses_the_indexes_no_query_uses(
    tmp_path: Path,
) -> None:
    path = tmp_path / "views.db"
    facts = [
        _wide_fact("000000000005.e-1/", 0, "TINA-30", 2, 5),
        _wide_fact("000000000005.e-1/", 1, "MILO-12", 1, 5),
        _wide_fact("000000000005.e-1/", 10, "MILO-12", 4, 5),
        _wide_fact("000000000009.e-2/", 0, "TINA-30", -1, 9),
    ]
    with sqlite3.connect(path) as conn:  # as an earlier version made them
        conn.execute(WIDE_FACTS)
        conn.execute("CREATE INDEX ix_sales_fact_hour ON sales_fact (local_hour)")
        conn.execute("CREATE INDEX ix_sales_fact_business_day ON sales_fact (business_day)")
        conn.executemany(f"INSERT INTO sales_fact VALUES ({', '.join('?' * 21)})", facts)
    conn.close()
    plain = create_engine(f"sqlite:///{path}")
    Base.metadata.tables["payment_fact"].create(plain)
    with plain.begin() as connection:
        connection.exec_driver_sql(
            "CREATE INDEX ix_payment_fact_reference ON payment_fact (reference)"
        )
    plain.dispose()
    for _ in range(2):  # and opened again, once it has this shape
        engine = make_engine(f"sqlite:///{path}")
        try:
            found = {
                index["name"]
                for table in Base.metadata.tables
                for index in inspect(engine).get_indexes(table)
            }
            assert not found & set(RETIRED_INDEXES)
            assert {"ix_fact_event_business_day", "ix_payment_fact_business_day"} <= found
            assert "sales_fact" not in inspect(engine).get_table_names()
        finally:
            engine.dispose()
        with sqlite3.connect(path) as conn:
            assert sorted(conn.execute("SELECT * FROM sales_fact").fetchall()) == sorted(facts)
            assert conn.execute("SELECT count(*) FROM fact_event").fetchone() == (2,)
        conn.close()


def test_dropping_the_views_of_an_old_database_drops_its_wide_facts_table(tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    with sqlite3.connect(path) as conn:
        conn.execute(WIDE_FACTS)
        conn.execute(
            f"INSERT INTO sales_fact VALUES ({', '.join('?' * 21)})",
            _wide_fact("000000000005.e-1/", 0, "TINA-30", 2, 5),
        )
    conn.close()
    plain = create_engine(f"sqlite:///{path}")
    try:
        drop_schema(plain)  # what a rebuild does first
        create_schema(plain)
        with plain.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM sales_fact").scalar() == 0
    finally:
        plain.dispose()

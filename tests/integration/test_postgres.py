"""The write side, the relay's position and the read models on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from eventsourcing.application import Application
from sqlalchemy import Engine, create_engine, select

from domain.errors import SaleIdReusedError
from domain.values import LocationKind, Money
from projections.db import make_engine
from projections.models import SalesFact, SaleView, StockView
from projections.projector import HandedRecord, Projector
from services.application import RetailApp, SaleInput, SaleLineInput
from services.bus import EnvelopeProducer
from services.config import Settings
from services.envelopes import LocationFacts, to_outgoing
from services.relay import OutboxRelay
from services.tills import TillDesk
from tests.unit.test_projector_claims import (
    claim_holds_off_the_other_member,
    late_batch_sets_nothing_back,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def app(pg_database: str) -> Iterator[RetailApp]:
    settings = Settings(event_store="postgres", postgres_dsn=pg_database)
    retail = RetailApp(env=settings.event_store_env())
    retail.register_sku("TINA-30", "Tina plush", "Mascots", Money(12800, "CNY"))
    retail.register_location("STORE-1", LocationKind.PARTNER_STORE, "S1", "Beijing", "Dongcheng")
    yield retail
    retail.close()


@pytest.fixture
def engine(pg_views_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_views_url)
    yield engine
    engine.dispose()


def test_stock_and_idempotent_sales_on_postgres(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    first = app.record_sale("T-1", "S-1", "STORE-1", "", None, [SaleLineInput("TINA-30", 3)], [])
    head = app.recorder.max_notification_id()
    again = app.record_sale("T-1", "S-1", "STORE-1", "", None, [SaleLineInput("TINA-30", 3)], [])
    assert again.replayed and again.sale_id == first.sale_id
    assert app.recorder.max_notification_id() == head
    with pytest.raises(SaleIdReusedError):
        app.record_sale("T-1", "S-1", "STORE-1", "", None, [SaleLineInput("TINA-30", 1)], [])
    item = app.get_stock_item("TINA-30", "STORE-1")
    assert item is not None and item.on_hand == 7


def test_a_reopened_application_reads_back_what_was_written(
    app: RetailApp, pg_database: str
) -> None:
    app.receive_stock("TINA-30", "STORE-1", 4, "DN-1")
    reopened = RetailApp(
        env=Settings(event_store="postgres", postgres_dsn=pg_database).event_store_env()
    )
    try:
        item = reopened.get_stock_item("TINA-30", "STORE-1")
        assert item is not None and item.on_hand == 4
    finally:
        reopened.close()


def test_the_projector_upserts_views_and_offsets_on_postgres(
    app: RetailApp, engine: Engine
) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    app.record_sale("T-1", "S-1", "STORE-1", "", None, [SaleLineInput("TINA-30", 3)], [])

    def lookup(code: str) -> LocationFacts:
        location = app.get_location(code)
        return LocationFacts(location.kind, location.district)

    records = []
    for n in app.recorder.select_notifications(start=1, limit=100):
        outgoing = to_outgoing(n, app.mapper, app.name, lookup)
        if outgoing is not None:
            value = outgoing.envelope.SerializeToString()
            records.append(HandedRecord(outgoing.topic, 0, n.id, value))
    projector = Projector(engine, consumer=None, group="g")  # records handed in directly
    projector.apply(records)
    projector.apply(records)  # delivered twice: dropped the second time
    assert projector.stats.duplicates == len(records)
    with engine.connect() as conn:
        on_hand = conn.execute(
            select(StockView.on_hand).where(
                StockView.sku == "TINA-30", StockView.location == "STORE-1"
            )
        ).scalar()
        sale = conn.execute(
            select(SaleView.sale_id).where(SaleView.client_sale_id == "S-1")
        ).scalar_one()
        fact = conn.execute(select(SalesFact)).one()  # written from its event's Facts
    assert on_hand == 7
    assert (fact.kind, fact.sale_id, fact.sku, fact.units, fact.late) == (
        "sale", sale, "TINA-30", 3, False,
    )  # fmt: skip
    assert fact.occurred_at.utcoffset() is not None  # timestamptz: an instant, read back aware


class _Acked:
    def get(self, timeout: float | None = None) -> None:
        return None


class _RecordingProducer(EnvelopeProducer):
    """Stands in for Kafka here: this test is about the relay's position on PostgreSQL."""

    def __init__(self) -> None:
        super().__init__("unused:0")
        self.sent: list[tuple[str, bytes]] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> _Acked:
        if key is not None:  # markers carry no key
            self.sent.append((topic, key))
        return _Acked()

    def partitions_for(self, topic: str) -> list[int]:
        return [0]

    def flush(self, timeout: float = 30.0) -> None:
        pass


def test_the_relay_position_is_kept_in_the_postgres_event_store(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    producer = _RecordingProducer()
    relay = OutboxRelay(app, producer)
    relay.run_once()
    head = app.recorder.max_notification_id()
    assert relay.position == head and len(producer.sent) == relay.published > 0
    assert OutboxRelay(app, _RecordingProducer()).position == head


def test_the_till_desk_on_postgres(app: RetailApp) -> None:
    """Batched sales, a retry, a shift read from PostgreSQL's notifications (stream ids come
    back as UUIDs there) and a stock item saved behind the desk's back (the batch's commit
    fails and it is decided again sale by sale)."""
    desk = TillDesk(app, linger=0.05, gather=64)

    def post(sale: str, quantity: int = 1) -> SaleInput:
        lines = [SaleLineInput("TINA-30", quantity)]
        return SaleInput("T-1", sale, "STORE-1", "", None, lines, [])

    try:
        app.receive_stock("TINA-30", "STORE-1", 100, "DN-1")
        with ThreadPoolExecutor(8) as pool:
            receipts = list(pool.map(desk.record, [post(f"S-{n}") for n in range(20)]))
        assert desk.batches < 20 and not any(r.replayed for r in receipts)
        assert desk.record(post("S-3")).replayed
        app.open_shift("T-1", "SH-1", "STORE-1", "staff", Money(0, "CNY"))
        assert desk.record(post("S-20")).shift_id == "SH-1"
        item = app.get_stock_item("TINA-30", "STORE-1")
        assert item is not None
        item.receive(10, "DN-elsewhere")
        Application.save(app, item)  # not through this process's bookkeeping
        batches = desk.batches
        assert not desk.record(post("S-21", 2)).replayed
        assert desk.batches == batches  # its batch's commit failed: decided on its own
        item = app.get_stock_item("TINA-30", "STORE-1")
        assert item is not None and item.on_hand == 100 - 21 + 10 - 2
    finally:
        desk.stop()


def test_a_late_batch_of_a_member_presumed_dead_sets_no_view_back_on_postgres(
    engine: Engine,
) -> None:
    """The partitions' offset rows are locked (SELECT ... FOR UPDATE) instead of SQLite's
    database lock; the same interleaving as the unit test."""
    late_batch_sets_nothing_back(engine)


def test_a_claimed_partition_holds_off_the_other_members_commit_on_postgres(
    engine: Engine,
) -> None:
    claim_holds_off_the_other_member(engine)


def test_an_old_database_keeps_its_sales_facts_on_postgres(pg_views_url: str) -> None:
    old = create_engine(pg_views_url)
    with old.begin() as conn:  # the wide table of versions before fact_event and fact_line
        conn.exec_driver_sql(
            "CREATE TABLE sales_fact (id VARCHAR(80) PRIMARY KEY, kind VARCHAR(16) NOT NULL, "
            "sale_id VARCHAR(64) NOT NULL, location VARCHAR(64) NOT NULL, "
            "channel VARCHAR(16) NOT NULL, district VARCHAR(100) NOT NULL, "
            "terminal VARCHAR(64) NOT NULL, shift_id VARCHAR(64) NOT NULL, "
            "sku VARCHAR(64) NOT NULL, campaign VARCHAR(64) NOT NULL, units BIGINT NOT NULL, "
            "gross_minor BIGINT NOT NULL, discount_minor BIGINT NOT NULL, "
            "net_minor BIGINT NOT NULL, tax_minor BIGINT NOT NULL, currency VARCHAR(3) NOT NULL, "
            "occurred_at TIMESTAMP WITH TIME ZONE NOT NULL, business_day VARCHAR(10) NOT NULL, "
            "local_hour VARCHAR(13) NOT NULL, late BOOLEAN NOT NULL, position BIGINT NOT NULL)"
        )
        for ids, line, units, position in [("000000000005.e-1/", 0, 2, 5),
                                           ("000000000005.e-1/", 12, 1, 5),
                                           ("000000000009.e-2/", 0, -1, 9)]:  # fmt: skip
            conn.exec_driver_sql(
                "INSERT INTO sales_fact VALUES (%(id)s, 'sale', 'S-1', 'STORE-1', 'store', "
                "'Dongcheng', 'T-1', 'SH-1', 'TINA-30', '', %(units)s, 100, 0, 100, 12, 'CNY', "
                "'2026-02-06 04:05:06.000789+00', '2026-02-06', '2026-02-06T12', false, "
                "%(position)s)",
                {"id": f"{ids}{line}", "units": units, "position": position},
            )
    old.dispose()
    engine = make_engine(pg_views_url)
    try:
        with engine.connect() as conn:
            facts = conn.execute(
                select(SalesFact.id, SalesFact.units, SalesFact.position).order_by(SalesFact.id)
            ).all()
    finally:
        engine.dispose()
    assert [tuple(f) for f in facts] == [
        ("000000000005.e-1/0", 2, 5), ("000000000005.e-1/12", 1, 5), ("000000000009.e-2/0", -1, 9),
    ]  # fmt: skip

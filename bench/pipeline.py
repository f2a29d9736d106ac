"""The pipeline's stages on their own, in a process of their own, after the backend stopped:
the product's relay and projector code against raw kafka-python and raw SQL doing the least
the same job needs, and the rebuild.

Spec (JSON on stdin): {"events_db", "bootstrap", "work_dir", "partitions", "seconds"}, where
`events_db` is a copy of the backend's event store (the relay's position in it is reset, so
the relay publishes every event again, to topics of its own). One JSON line out.

- relay: `OutboxRelay.run_once` until caught up: notifications read, mapped to envelopes,
  produced (acks=all, idempotent), acknowledged, position recorded.
- raw produce: the same envelopes, already serialised, sent by a KafkaProducer with the relay
  producer's settings, then flushed and every send acknowledged.
- projector: `Projector.poll_once` in a consumer group on the relay's topics into fresh SQLite
  views until every record was applied (the group join is not timed).
- raw consume: the same records by assignment, each envelope parsed and upserted by stream id
  into one table, one transaction per polled batch (executemany with sqlite3); the time in
  its SQL writes is kept apart (`sql_seconds`).
- rows floor: the rows the first projector run left in its views inserted again into fresh
  tables with sqlite3 alone (`bench_rows_floor`): what the projector's writes cost the raw
  library, nothing built in Python.
- rebuild: `projections.rebuild.rebuild` of the relay's topics into fresh SQLite views.
- rebuild_day (the issue's size): `rebuild_events` generated events (spec, else
  BENCH_REBUILD_EVENTS; 1,000,000, or 20,000 with BENCH_QUICK) of a busy retail day (see
  SyntheticDay) sent to topics of their own by a raw producer, fed by a generating process;
  then `rebuild` of those topics into fresh SQLite views, timed, and the views checked
  against what was generated (sales, sold units, payments, stock on hand and reserved).
  The feed stops early, and says so in its event count, if the deadline would not leave
  the rebuild time to finish.

The relay and the projector take turns with their raw baselines (TURNS: each twice, to topics,
views and consumer groups of their own); each result is both runs as one (`merged`), with the
rate of each under `rounds`.

Result keys: relay, raw_produce, projector, raw_consume, rows_floor, rebuild, records_on_topics,
rebuild_day {events, records, streams, seconds, rate, record_rate, dead_letters, processes, gaps,
views_agree, disagreements, feed {events, records, seconds, rate}}, profiles.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing
import random
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import Engine, func, select

from bench.common import Deadline, read_spec, write_result
from bench.profile import StageProfile
from bench.sizes import from_env
from domain.catalog import LOCATION_REGISTERED, SKU_REGISTERED
from domain.finance import DAY_CLOSED
from domain.online import (
    FLASH_BOUGHT,
    RESERVATION_CONFIRMED,
    RESERVATION_PLACED,
    RESERVATION_RELEASED,
)
from domain.sales import SALE_RECORDED, SALE_RETURNED
from domain.shifts import SHIFT_CLOSED, SHIFT_OPENED
from domain.stock import STOCK_MOVED, STOCK_OPENED
from projections.db import make_engine
from projections.models import (
    Base,
    PaymentFact,
    SalesFact,
    SaleView,
    StockView,
    StreamGap,
)
from projections.projector import Projector
from projections.rebuild import rebuild
from protos.retail.v1 import common_pb2, events_pb2
from services.application import RetailApp
from services.bus import (
    CATALOG_TOPIC,
    ORDERS_TOPIC,
    SALES_TOPIC,
    STOCK_TOPIC,
    EnvelopeProducer,
    ensure_topics,
    new_consumer,
    topic_names,
)
from services.cli import settle_collector
from services.config import Settings
from services.envelopes import to_outgoing
from services.relay import TRACKING_NAME, OutboxRelay

RELAY_NS = "bench-relay."
RAW_NS = "bench-raw."
TURNS = ("stage", "raw", "raw", "stage")  # each stage and its raw baseline, twice
ROUNDS = TURNS.count("stage")


def reset_relay_position(events_db: str) -> None:
    with (
        contextlib.closing(sqlite3.connect(events_db)) as conn,
        conn,
        contextlib.suppress(sqlite3.OperationalError),  # no tracking table yet
    ):
        conn.execute("DELETE FROM tracking WHERE application_name = ?", (TRACKING_NAME,))


def bench_relay(
    app: RetailApp, bootstrap: str, deadline: Deadline, profile: StageProfile, namespace: str
) -> tuple[dict[str, Any], Any]:
    relay = OutboxRelay(app, EnvelopeProducer(bootstrap), topic_namespace=namespace)
    assert relay.position == 0, "the relay's position was not reset"
    relay.producer.open()
    for topic in topic_names(namespace):  # metadata is fetched before the clock starts
        relay.producer.partitions_for(topic)
    notifications = 0
    cpu = time.process_time()
    started = time.perf_counter()
    with profile:
        while not deadline.passed():
            done = relay.run_once()
            if done == 0:
                break
            notifications += done
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    relay.producer.close()
    return {
        "notifications": notifications,
        "events": relay.published,
        "cpu_seconds": cpu,  # this process's: reading, mapping, the client and its I/O thread
        "seconds": elapsed,
        "rate": relay.published / elapsed if elapsed else 0.0,
        "caught_up": not deadline.passed(),
    }, relay


def envelopes_of(app: RetailApp, relay: OutboxRelay) -> list[tuple[str, bytes, bytes]]:
    """The records the relay sent (markers aside), made again by the same code, untimed, for
    topics in RAW_NS (a round's namespace goes in front of it)."""
    out: list[tuple[str, bytes, bytes]] = []
    start = 0
    while True:
        page = app.recorder.select_notifications(start=start, limit=1000, inclusive_of_start=False)
        if not page:
            return out
        for notification in page:
            outgoing = to_outgoing(notification, app.mapper, app.name, relay._location)
            if outgoing is not None:
                out.append(
                    (RAW_NS + outgoing.topic, outgoing.key, outgoing.envelope.SerializeToString())
                )
        start = page[-1].id


def bench_raw_produce(
    bootstrap: str, records: list[tuple[str, bytes, bytes]], deadline: Deadline, namespace: str
) -> dict[str, Any]:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, client_id="bench-raw", acks="all", enable_idempotence=True,
        linger_ms=2, batch_size=256 * 1024, retries=2_147_483_647, delivery_timeout_ms=30_000,
        request_timeout_ms=10_000,
    )  # fmt: skip
    try:
        for topic in topic_names(namespace + RAW_NS):
            producer.partitions_for(topic)
        cpu = time.process_time()
        started = time.perf_counter()
        sent = [
            producer.send(namespace + topic, key=key, value=value) for topic, key, value in records
        ]
        producer.flush(timeout=max(deadline.left(), 1.0))
        for result in sent:
            result.get(timeout=30)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        producer.close(timeout=10)
    return {
        "events": len(records),
        "seconds": elapsed,
        "rate": len(records) / elapsed if elapsed else 0.0,
        "cpu_seconds": cpu,  # this process's (client and its I/O thread), not the broker's
    }


def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-ends")
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
        ]
        ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        return ends
    finally:
        consumer.close()


def bench_projector(
    bootstrap: str,
    topics: list[str],
    total: int,
    views: Path,
    deadline: Deadline,
    profile: StageProfile,
    group: str = "bench-projector",
) -> dict[str, Any]:
    engine = make_engine(f"sqlite:///{views}")
    consumer = new_consumer(bootstrap, group, client_id=group)
    projector = Projector(engine, consumer, group)
    try:
        projector.subscribe(topics)
        first = 0
        while not first and not deadline.passed():  # joining the group and the first batch
            first = projector.poll_once(timeout_ms=500)  # are not timed
        seen = first
        cpu = time.process_time()
        started = time.perf_counter()
        with profile:
            while seen < total and not deadline.passed():
                seen += projector.poll_once(timeout_ms=200)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        rows = view_rows(engine)
    finally:
        projector.close()
        engine.dispose()
    return {
        "records": seen,
        "events": projector.stats.applied,
        "batches": projector.stats.batches,
        "seconds": elapsed,
        "timed": seen - first,
        "cpu_seconds": cpu,
        "rate": (seen - first) / elapsed if elapsed else 0.0,
        # This process's (the checkpointing thread's too), per record after the first batch.
        "cpu_per_record": cpu / (seen - first) if seen > first else 0.0,
        "view_rows": rows,
    }


def view_rows(engine: Engine) -> dict[str, int]:
    """Rows in each view table (the applied versions included, the offsets left out)."""
    counts = {}
    with engine.connect() as conn:
        for name, table in Base.metadata.tables.items():
            if name not in ("consumer_offset", "stream_gap"):
                count = select(func.count()).select_from(table)
                counts[name] = int(conn.execute(count).scalar_one())
    return counts


def bench_raw_consume(
    bootstrap: str, ends: dict[TopicPartition, int], db: Path, deadline: Deadline
) -> dict[str, Any]:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS latest (stream_id TEXT PRIMARY KEY, version INTEGER, "
        "position INTEGER, event_type TEXT, envelope BLOB)"
    )
    upsert = (
        "INSERT INTO latest VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET "
        "version = excluded.version, position = excluded.position, "
        "event_type = excluded.event_type, envelope = excluded.envelope"
    )
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, client_id="bench-raw-consume", enable_auto_commit=False,
        max_poll_records=2000, fetch_max_wait_ms=50,
    )  # fmt: skip
    partitions = list(ends)
    total = sum(ends.values())

    sql = [0.0]  # seconds in the SQL writes (BEGIN to COMMIT), the first batch's too

    def apply(polled: dict[TopicPartition, list[Any]]) -> int:
        rows = []
        count = 0
        for records in polled.values():
            for record in records:
                count += 1
                envelope = events_pb2.EventEnvelope.FromString(record.value)
                if envelope.stream_id:  # position markers carry none
                    rows.append(
                        (envelope.stream_id, envelope.stream_version, envelope.position,
                         envelope.event_type, record.value)
                    )  # fmt: skip
        began = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(upsert, rows)
        conn.execute("COMMIT")
        sql[0] += time.perf_counter() - began
        return count

    try:
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        first = 0
        while not first and not deadline.passed():  # as for the projector: the first batch
            first = apply(consumer.poll(timeout_ms=500))  # is not timed
        seen = first
        sql[0] = 0.0
        cpu = time.process_time()
        started = time.perf_counter()
        while seen < total and not deadline.passed():
            seen += apply(consumer.poll(timeout_ms=200))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        consumer.close()
        conn.close()
    return {
        "records": seen,
        "seconds": elapsed,
        "timed": seen - first,
        "cpu_seconds": cpu,
        "rate": (seen - first) / elapsed if elapsed else 0.0,
        "cpu_per_record": cpu / (seen - first) if seen > first else 0.0,
        "sql_seconds": sql[0],  # of `seconds`: the batches' BEGIN to COMMIT
    }


def bench_rows_floor(views: Path, db: Path, records: int, transactions: int) -> dict[str, Any]:
    """What inserting the projector's rows costs the raw library alone: every row a projector
    run left in its views (the applied versions too; offsets and gaps aside) copied into
    fresh tables of the same schema and pragmas with sqlite3, plain INSERTs by executemany,
    in as many transactions as that run had batches, each taking its share of every table.
    A floor: rows the projector wrote more than once (a stock level in several batches) are
    inserted once, and nothing is built, looked up or converted."""
    make_engine(f"sqlite:///{db}").dispose()  # the views' tables and indexes, untimed
    tables = [n for n in Base.metadata.tables if n not in ("consumer_offset", "stream_gap")]
    with contextlib.closing(sqlite3.connect(views)) as source:
        rows = {name: source.execute(f"SELECT * FROM {name}").fetchall() for name in tables}
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        marks = {name: ", ".join("?" * len(Base.metadata.tables[name].c)) for name in tables}
        inserts = {name: f"INSERT INTO {name} VALUES ({marks[name]})" for name in tables}
        transactions = max(transactions, 1)
        cpu = time.process_time()
        started = time.perf_counter()
        for n in range(transactions):
            conn.execute("BEGIN")
            for name, table_rows in rows.items():
                share = table_rows[
                    n * len(table_rows) // transactions : (n + 1) * len(table_rows) // transactions
                ]
                conn.executemany(inserts[name], share)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        conn.close()
    records = max(records, 1)
    return {
        "rows": sum(len(r) for r in rows.values()),
        "records": records,
        "transactions": transactions,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "per_record": elapsed / records,
    }


def bench_rebuild(
    bootstrap: str, topics: list[str], views: Path, profile: StageProfile
) -> dict[str, Any]:
    engine = make_engine(f"sqlite:///{views}")
    try:
        with profile:
            result = rebuild(bootstrap, topics, engine, timeout=600)
    finally:
        engine.dispose()
    return {
        "records": result.records,
        "events": result.applied,
        "seconds": result.seconds,
        "rate": result.applied / result.seconds if result.seconds else 0.0,
        "record_rate": result.records / result.seconds if result.seconds else 0.0,
    }


# The 1,000,000-event rebuild: a generated retail day on topics of its own

REBUILD_NS = "bench-rebuild."
MARK_EVERY = 10_000  # events between position markers (the relay marks once per call)
STREAM_TOPICS = (CATALOG_TOPIC, STOCK_TOPIC, SALES_TOPIC, ORDERS_TOPIC)
FLASH_SKU, FLAGSHIP, WAREHOUSE = "LTD-HOURGLASS-01", "ONLINE-FLAGSHIP", "WH-NORTH"
LINES_PER_SALE = ((1, 2, 3, 4, 5), (40, 25, 17, 10, 8))
METHODS = (common_pb2.PAYMENT_METHOD_CASH, common_pb2.PAYMENT_METHOD_ALIPAY,
           common_pb2.PAYMENT_METHOD_WECHAT_PAY, common_pb2.PAYMENT_METHOD_BANK_CARD)  # fmt: skip
Out = list[tuple[str, bytes | None, bytes, int | None]]  # topic, key, value, partition


@dataclass
class _Item:
    """A stock item's stream, and its levels as the write side would have them."""

    stream: str
    version: int = 1
    on_hand: int = 0
    reserved: int = 0


@dataclass
class _Shift:
    stream: str
    shift_id: str
    location: str
    sales: int = 0
    takings: Counter[int] = field(default_factory=Counter)


@dataclass
class Expected:
    """What the rebuilt views must show, counted while generating."""

    events: int = 0
    sales: int = 0
    fact_units: int = 0  # sold at tills and online, less returns
    payments_minor: int = 0  # taken less refunded


class SyntheticDay:
    """Envelopes of a busy day across many stores, as the relay would publish them: the
    catalogue, till sales of 1-5 lines with a stock movement per line, shifts, returns,
    online reservations (placed, then confirmed or released) and flash orders, receipts when
    stock runs low, settlements and the day's close; every stream's versions contiguous, a
    position per event, and markers on every partition like the relay's."""

    def __init__(self, partitions: int, seed: int = 5, stores: int = 120, skus: int = 300) -> None:
        self.rng = random.Random(seed)
        self.partitions = partitions
        self.position = 0
        self.streams = 0
        self.expected = Expected()
        self.out: Out = []
        self.moment = 1_770_000_000 * 1_000_000  # microseconds since the epoch, a February day
        self.items: dict[tuple[str, str], _Item] = {}
        self.shifts: dict[str, _Shift] = {}
        self.later: deque[Callable[[], None]] = deque()
        self.stores = [f"STORE-{n:04d}" for n in range(stores)]
        self.districts = {code: f"District {n % 16}" for n, code in enumerate(self.stores)}
        self.districts |= {FLAGSHIP: "Shunyi", WAREHOUSE: "Binhai"}
        self.prices = {f"SKU-{n:04d}": 990 + 100 * self.rng.randrange(600) for n in range(skus)}
        self.prices[FLASH_SKU] = 29_900
        self.skus = [sku for sku in self.prices if sku != FLASH_SKU]
        self._catalogue()

    def take(self, count: int) -> Out:
        """At least `count` more events' records (markers included)."""
        goal = self.expected.events + count
        while self.expected.events < goal:
            roll = self.rng.random()
            if roll < 0.72:
                self._sale()
            elif roll < 0.86:
                self._reserve()
            else:
                self._flash_order()
            if len(self.later) > 300:
                self.later.popleft()()
        out, self.out = self.out, []
        return out

    def finish(self) -> Out:
        """The deferred events, the closes of every shift and day, and the last markers."""
        while self.later:
            self.later.popleft()()
        for terminal in list(self.shifts):
            self._close_shift(terminal)
        for store in self.stores:
            closed = self._envelope(DAY_CLOSED, self._stream(), 1, store)
            closed.business_day_closed.location, closed.business_day_closed.business_day = (
                store, "2026-02-02",
            )  # fmt: skip
            self._emit(SALES_TOPIC, f"day/{store}/2026-02-02", closed)
        self._markers()
        out, self.out = self.out, []
        return out

    # Building blocks

    def _stream(self) -> str:
        self.streams += 1
        return str(UUID(int=self.rng.getrandbits(128), version=4))

    def _envelope(
        self, event_type: str, stream: str, version: int, location: str = "", terminal: str = ""
    ) -> events_pb2.EventEnvelope:
        self.position += 1
        self.moment += self.rng.randrange(20_000, 120_000)  # a day spread over the events
        digest = hashlib.md5(f"{stream}/{version}".encode()).hexdigest()
        envelope = events_pb2.EventEnvelope(
            event_id=f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}",
            event_type=event_type, schema_version=1, stream_id=stream, stream_version=version,
            position=self.position, application="Retail",
        )  # fmt: skip
        seconds, micros = divmod(self.moment, 1_000_000)
        for stamp in (envelope.occurred_at, envelope.recorded_at):
            stamp.seconds, stamp.nanos = seconds, micros * 1000
        if location:
            source = envelope.source
            source.location, source.district, source.terminal = (
                location, self.districts.get(location, ""), terminal,
            )  # fmt: skip
            source.channel = (
                common_pb2.CHANNEL_ONLINE if location == FLAGSHIP
                else common_pb2.CHANNEL_WAREHOUSE if location == WAREHOUSE
                else common_pb2.CHANNEL_STORE
            )  # fmt: skip
        return envelope

    def _emit(self, topic: str, key: str, envelope: events_pb2.EventEnvelope) -> None:
        self.out.append((REBUILD_NS + topic, key.encode(), envelope.SerializeToString(), None))
        self.expected.events += 1
        if self.expected.events % MARK_EVERY == 0:
            self._markers()

    def _markers(self) -> None:
        marker = events_pb2.EventEnvelope(
            event_type="retail.PositionMarker", position=self.position, application="Retail",
            position_marker=events_pb2.PositionMarker(),
        ).SerializeToString()  # fmt: skip
        for topic in STREAM_TOPICS:
            for partition in range(self.partitions):
                self.out.append((REBUILD_NS + topic, None, marker, partition))

    def _catalogue(self) -> None:
        for sku, price in self.prices.items():
            envelope = self._envelope(SKU_REGISTERED, self._stream(), 1)
            registered = envelope.sku_registered
            registered.sku, registered.name, registered.series = sku, f"Article {sku}", "Bench"
            registered.list_price.minor_units, registered.list_price.currency = price, "CNY"
            registered.tax_rate_bp = 1300
            self._emit(CATALOG_TOPIC, sku, envelope)
        kinds = [(FLAGSHIP, common_pb2.LOCATION_KIND_ONLINE_FLAGSHIP),
                 (WAREHOUSE, common_pb2.LOCATION_KIND_WAREHOUSE)]  # fmt: skip
        kinds += [(store, common_pb2.LOCATION_KIND_PARTNER_STORE) for store in self.stores]
        for code, kind in kinds:
            envelope = self._envelope(LOCATION_REGISTERED, self._stream(), 1, code)
            location = envelope.location_registered
            location.location, location.kind, location.name = code, kind, f"Shop {code}"
            location.city, location.district = "Beijing", self.districts[code]
            self._emit(CATALOG_TOPIC, code, envelope)

    def _move(
        self, sku: str, location: str, reason: str, on_hand: int, reference: str,
        reserved: int = 0,
    ) -> None:  # fmt: skip
        item = self.items.get((sku, location))
        if item is None:
            item = self.items[(sku, location)] = _Item(self._stream())
            opened = self._envelope(STOCK_OPENED, item.stream, 1, location)
            opened.stock_item_opened.sku, opened.stock_item_opened.location = sku, location
            self._emit(STOCK_TOPIC, sku, opened)
        if reason in ("sold", "reserved", "sold_online") and item.on_hand - item.reserved < 10:
            self._move(sku, location, "received", 500, f"DN-{self.position}")
        item.version += 1
        item.on_hand += on_hand
        item.reserved += reserved
        envelope = self._envelope(STOCK_MOVED, item.stream, item.version, location)
        moved = envelope.stock_moved
        moved.sku, moved.location, moved.reason, moved.reference = sku, location, reason, reference
        moved.quantity = on_hand or reserved
        levels = moved.levels
        levels.on_hand, levels.reserved = item.on_hand, item.reserved
        levels.available = item.on_hand - item.reserved
        self._emit(STOCK_TOPIC, sku, envelope)

    def _line(self, line: events_pb2.SaleLine, sku: str, quantity: int, discount: int) -> None:
        line.sku, line.quantity, line.tax_rate_bp = sku, quantity, 1300
        line.unit_price.minor_units, line.unit_price.currency = self.prices[sku], "CNY"
        line.discount.minor_units, line.discount.currency = discount, "CNY"

    # What happens during the day

    def _sale(self) -> None:
        rng = self.rng
        store = rng.choice(self.stores)
        terminal = f"{store}-T{rng.randrange(4)}"
        shift = self.shifts.get(terminal) or self._open_shift(terminal, store)
        stream = self._stream()
        envelope = self._envelope(SALE_RECORDED, stream, 1, store, terminal)
        sale = envelope.sale_recorded
        sale.sale_id, sale.terminal, sale.client_sale_id = stream, terminal, f"C{self.position}"
        sale.location, sale.staff, sale.shift_id = store, "staff-1", shift.shift_id
        lines: list[tuple[str, int, int]] = []
        total = 0
        for sku in rng.sample(self.skus, rng.choices(*LINES_PER_SALE)[0]):
            quantity = rng.choice((1, 1, 1, 2, 3))
            gross = self.prices[sku] * quantity
            discount = gross // 10 if rng.random() < 0.1 else 0
            self._line(sale.lines.add(), sku, quantity, discount)
            lines.append((sku, quantity, gross - discount))
            total += gross - discount
        method = rng.choice(METHODS)
        paid = sale.payments.add(method=method, reference="" if method == METHODS[0] else stream)
        paid.amount.minor_units, paid.amount.currency = total, "CNY"
        sale.total.minor_units, sale.total.currency = total, "CNY"
        self._emit(SALES_TOPIC, stream, envelope)
        for sku, quantity, _ in lines:
            self._move(sku, store, "sold", -quantity, stream)
        shift.sales += 1
        shift.takings[method] += total
        self.expected.sales += 1
        self.expected.fact_units += sum(quantity for _, quantity, _ in lines)
        self.expected.payments_minor += total
        if rng.random() < 0.02:
            self.later.append(lambda: self._return(stream, store, terminal, lines[0]))
        if shift.sales >= 400:
            self._close_shift(terminal)

    def _return(self, sale_id: str, store: str, terminal: str, line: tuple[str, int, int]) -> None:
        sku, quantity, refund = line
        envelope = self._envelope(SALE_RETURNED, sale_id, 2, store, terminal)
        returned = envelope.sale_returned
        returned.sale_id, returned.terminal, returned.location = sale_id, terminal, store
        returned.return_id, returned.client_sale_id = f"R{self.position}", f"C{self.position}"
        added = returned.lines.add(sku=sku, quantity=quantity, tax_rate_bp=1300)
        added.refund.minor_units, added.refund.currency = refund, "CNY"
        paid = returned.refunds.add(method=common_pb2.PAYMENT_METHOD_CASH)
        paid.amount.minor_units, paid.amount.currency = refund, "CNY"
        returned.refund_total.minor_units, returned.refund_total.currency = refund, "CNY"
        self._emit(SALES_TOPIC, sale_id, envelope)
        self._move(sku, store, "returned", quantity, sale_id)
        self.expected.fact_units -= quantity
        self.expected.payments_minor -= refund

    def _open_shift(self, terminal: str, store: str) -> _Shift:
        shift = self.shifts[terminal] = _Shift(self._stream(), f"S{self.position}", store)
        envelope = self._envelope(SHIFT_OPENED, shift.stream, 1, store, terminal)
        opened = envelope.shift_opened
        opened.terminal, opened.shift_id, opened.location = terminal, shift.shift_id, store
        opened.cash_float.minor_units, opened.cash_float.currency = 50_000, "CNY"
        self._emit(SALES_TOPIC, f"shift/{terminal}/{shift.shift_id}", envelope)
        return shift

    def _close_shift(self, terminal: str) -> None:
        shift = self.shifts.pop(terminal)
        envelope = self._envelope(SHIFT_CLOSED, shift.stream, 2, shift.location, terminal)
        closed = envelope.shift_closed
        closed.terminal, closed.shift_id, closed.location = terminal, shift.shift_id, shift.location
        for method, amount in sorted(shift.takings.items()):
            total = closed.z_report.add(method=method)
            total.amount.minor_units, total.amount.currency = amount, "CNY"
        closed.counted_cash.minor_units = shift.takings[METHODS[0]]
        closed.counted_cash.currency = "CNY"
        self._emit(SALES_TOPIC, f"shift/{terminal}/{shift.shift_id}", envelope)

    def _reserve(self) -> None:
        rng = self.rng
        order, stream = f"WEB-{self.position}", self._stream()
        envelope = self._envelope(RESERVATION_PLACED, stream, 1, FLAGSHIP)
        placed = envelope.reservation_placed
        placed.order_id, placed.member, placed.location = (
            order,
            f"M{rng.randrange(10**6)}",
            FLAGSHIP,
        )
        placed.expires_at.seconds = self.moment // 1_000_000 + 900
        wanted = {sku: rng.choice((1, 1, 2)) for sku in rng.sample(self.skus, rng.randint(1, 3))}
        placed.lines.update(wanted)
        self._emit(ORDERS_TOPIC, order, envelope)
        for sku, quantity in wanted.items():
            self._move(sku, FLAGSHIP, "reserved", 0, order, reserved=quantity)
        self.later.append(lambda: self._settle(order, stream, wanted))

    def _settle(self, order: str, stream: str, wanted: dict[str, int]) -> None:
        confirmed = self.rng.random() < 0.85
        envelope = self._envelope(RESERVATION_CONFIRMED if confirmed else RESERVATION_RELEASED,
                                  stream, 2, FLAGSHIP)  # fmt: skip
        settled = envelope.reservation_settled
        settled.order_id, settled.status = order, "confirmed" if confirmed else "released"
        if confirmed:
            settled.location = FLAGSHIP
            for sku, quantity in wanted.items():
                self._line(settled.sold.add(), sku, quantity, 0)
                self.expected.fact_units += quantity
        self._emit(ORDERS_TOPIC, order, envelope)
        for sku, quantity in wanted.items():
            reason, on_hand = ("confirmed", -quantity) if confirmed else ("released", 0)
            self._move(sku, FLAGSHIP, reason, on_hand, order, reserved=-quantity)

    def _flash_order(self) -> None:
        order, stream = f"FLASH-{self.position}", self._stream()
        envelope = self._envelope(FLASH_BOUGHT, stream, 1, FLAGSHIP)
        bought = envelope.flash_order_confirmed
        bought.order_id, bought.sku, bought.location, bought.quantity = (
            order,
            FLASH_SKU,
            FLAGSHIP,
            1,
        )
        bought.member, bought.tax_rate_bp = f"M{self.rng.randrange(10**6)}", 1300
        bought.unit_price.minor_units, bought.unit_price.currency = self.prices[FLASH_SKU], "CNY"
        self._emit(ORDERS_TOPIC, order, envelope)
        self._move(FLASH_SKU, FLAGSHIP, "sold_online", -1, order)
        self.expected.fact_units += 1


def summary(day: SyntheticDay) -> dict[str, int]:
    """What the rebuilt views must show, counted while generating."""
    return {
        "events": day.expected.events,
        "streams": day.streams,
        "sales": day.expected.sales,
        "fact_units": day.expected.fact_units,
        "payments_minor": day.expected.payments_minor,
        "on_hand": sum(item.on_hand for item in day.items.values()),
        "reserved": sum(item.reserved for item in day.items.values()),
    }


def generate_day(partitions: int, events: int, chunks: Any, enough: Any) -> None:
    """The generating process: chunks of records onto `chunks` until `events` events, or
    until `enough` is set; then the day's close and its summary."""
    day = SyntheticDay(partitions)
    while day.expected.events < events and not enough.is_set():
        chunks.put(("records", day.take(min(20_000, events - day.expected.events))))
    chunks.put(("records", day.finish()))
    chunks.put(("done", summary(day)))


def produce_day(
    bootstrap: str, partitions: int, events: int, deadline: Deadline
) -> tuple[dict[str, Any], dict[str, int]]:
    """Sends `events` generated events (fewer if the deadline comes first). A process of its
    own generates them, so generating and sending use both cores; a chunk is sent while the
    one before waits for its acknowledgements. Answers the feed's figures and the summary."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, client_id="bench-rebuild-feed", acks="all",
        enable_idempotence=True, linger_ms=2, batch_size=256 * 1024, retries=2_147_483_647,
        delivery_timeout_ms=30_000, request_timeout_ms=10_000,
    )  # fmt: skip
    context = multiprocessing.get_context("spawn")
    chunks, enough = context.Queue(maxsize=4), context.Event()
    generator = context.Process(
        target=generate_day, args=(partitions, events, chunks, enough), daemon=True
    )
    waiting: list[Any] = []
    records = 0
    started = time.perf_counter()
    try:
        for topic in topic_names(REBUILD_NS, STREAM_TOPICS):
            producer.partitions_for(topic)
        generator.start()
        while True:
            kind, payload = chunks.get(timeout=120)
            if kind == "done":
                break
            send = producer.send
            sent = [send(t, key=k, value=v, partition=p) for t, k, v, p in payload]
            records += len(payload)
            for result in waiting:
                result.get(timeout=30)
            waiting = sent
            # What is left of the deadline is kept for the rebuild, at 8,000 events/s or more.
            if deadline.left() < max(30.0, records / 8_000):
                enough.set()
        producer.flush(timeout=60)
        for result in waiting:
            result.get(timeout=30)
    finally:
        producer.close(timeout=10)
        if generator.is_alive():
            generator.terminate()
        if generator.pid is not None:
            generator.join(10)
    elapsed = time.perf_counter() - started
    fed = {"events": payload["events"], "records": records, "seconds": elapsed,
           "rate": payload["events"] / elapsed if elapsed else 0.0}  # fmt: skip
    return fed, payload


def check_views(engine: Engine, written: dict[str, int]) -> list[str]:
    """Where the rebuilt views disagree with what the generator wrote (none: they agree)."""
    queries = {
        "sales": select(func.count()).select_from(SaleView),
        "fact_units": select(func.sum(SalesFact.units)),
        "payments_minor": select(func.sum(PaymentFact.amount_minor)),
        "on_hand": select(func.sum(StockView.on_hand)),
        "reserved": select(func.sum(StockView.reserved)),
    }
    with engine.connect() as conn:
        found = {name: conn.execute(query).scalar() for name, query in queries.items()}
    return [
        f"{name}: views {found[name]}, written {written[name]}"
        for name in queries
        if found[name] != written[name]
    ]


def bench_rebuild_day(
    bootstrap: str, partitions: int, events: int, views: Path, deadline: Deadline,
    profile: StageProfile,
) -> dict[str, Any]:  # fmt: skip
    """The issue's rebuild size: `events` generated events replayed into every view."""
    ensure_topics(bootstrap, partitions, topic_names(REBUILD_NS, STREAM_TOPICS))
    fed, written = produce_day(bootstrap, partitions, events, deadline)
    engine = make_engine(f"sqlite:///{views}")
    try:
        with profile:
            result = rebuild(
                bootstrap, topic_names(REBUILD_NS, STREAM_TOPICS), engine,
                timeout=max(deadline.left(), 30.0),
            )  # fmt: skip
        wrong = check_views(engine, written)
        with engine.connect() as conn:
            gaps = conn.execute(select(func.count()).select_from(StreamGap)).scalar()
    finally:
        engine.dispose()
    if result.applied != written["events"]:
        wrong.append(f"events: applied {result.applied}, written {written['events']}")
    return {
        "events": result.applied,
        "records": result.records,
        "streams": written["streams"],
        "seconds": result.seconds,
        "rate": result.applied / result.seconds if result.seconds else 0.0,
        "record_rate": result.records / result.seconds if result.seconds else 0.0,
        "dead_letters": result.dead_letters,
        "processes": result.processes,
        "gaps": gaps,
        "views_agree": not wrong,
        "disagreements": wrong,
        "feed": fed,
    }


def _round(namespace: str, round_: int) -> str:
    """The first round keeps the namespace as it is; later ones get their own topics."""
    return namespace if round_ == 0 else f"r{round_}.{namespace}"


def merged(runs: list[dict[str, Any]], counted: str) -> dict[str, Any]:
    """Rounds of one stage as one: the rate is what every round did over the time they took
    together; the counts are one round's, the times and CPU a round's on average."""
    seconds = sum(float(r["seconds"]) for r in runs)
    done = sum(float(r[counted]) for r in runs)
    cpu = sum(float(r.get("cpu_seconds") or 0.0) for r in runs)
    out = {
        **runs[0],
        "seconds": seconds / len(runs),
        "cpu_seconds": cpu / len(runs),
        "rate": done / seconds if seconds else 0.0,
        "rounds": [float(r["rate"]) for r in runs],
    }
    if "caught_up" in out:
        out["caught_up"] = all(r["caught_up"] for r in runs)
    if "cpu_per_record" in out:
        out["cpu_per_record"] = cpu / done if done else 0.0
    if "sql_seconds" in out:
        out["sql_seconds"] = sum(float(r["sql_seconds"]) for r in runs) / len(runs)
    return out


def projector_turns(
    bootstrap: str, ends: dict[TopicPartition, int], work: Path, deadline: Deadline,
    profile: StageProfile,
) -> dict[str, Any]:  # fmt: skip
    """The projector and raw consume in turns (TURNS) on the relay's topics, then the rows
    floor of the first projector run's views."""
    topics = sorted({tp.topic for tp in ends})
    total = sum(ends.values())
    projections: list[dict[str, Any]] = []
    consumes: list[dict[str, Any]] = []
    for turn in TURNS:
        if turn == "stage":
            run = len(projections)
            projections.append(bench_projector(
                bootstrap, topics, total, work / f"views-{run}.sqlite", deadline, profile,
                group=f"bench-projector-{run}",
            ))  # fmt: skip
        else:
            db = work / f"raw-{len(consumes)}.sqlite"
            consumes.append(bench_raw_consume(bootstrap, ends, db, deadline))
    floor = bench_rows_floor(
        work / "views-0.sqlite", work / "floor.sqlite", int(projections[0]["records"]),
        int(projections[0]["batches"]),
    )  # fmt: skip
    return {
        "projector": merged(projections, "timed"),
        "raw_consume": merged(consumes, "timed"),
        "rows_floor": floor,
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    spec = read_spec()
    bootstrap, work = spec["bootstrap"], Path(spec["work_dir"])
    deadline = Deadline(float(spec["seconds"]))
    ensure_topics(
        bootstrap, int(spec["partitions"]),
        [t for r in range(ROUNDS) for t in topic_names(_round(RELAY_NS, r))]
        + [t for r in range(ROUNDS) for t in topic_names(_round("", r) + RAW_NS)],
    )  # fmt: skip
    settings = Settings(data_dir=Path(spec["events_db"]).parent)
    app = RetailApp(env=settings.event_store_env())
    wanted = bool(spec.get("profile"))
    stages = {
        name: StageProfile(wanted) for name in ("relay", "projector", "rebuild", "rebuild_day")
    }
    result: dict[str, Any] = {}
    relays: list[dict[str, Any]] = []
    produces: list[dict[str, Any]] = []
    records: list[tuple[str, bytes, bytes]] = []
    try:
        # Each stage and its baseline take turns (TURNS), each run to topics of its own: this
        # machine's speed drifts by up to a third from one minute to the next, and a ratio of
        # runs made side by side, summed over the runs, drifts much less.
        for turn in TURNS:
            if turn == "stage":
                reset_relay_position(spec["events_db"])
                relay_result, relay = bench_relay(
                    app, bootstrap, deadline, stages["relay"], _round(RELAY_NS, len(relays))
                )
                relays.append(relay_result)
                if not records:
                    records = envelopes_of(app, relay)
            else:
                namespace = _round("", len(produces))
                produces.append(bench_raw_produce(bootstrap, records, deadline, namespace))
    finally:
        app.close()
    result["relay"] = merged(relays, "events")
    result["raw_produce"] = merged(produces, "events")
    # The stages below run as in a `retail run` process: its start-up heap collected once and
    # frozen (settle_collector), not this stage's 100,000 records kept alive for every
    # collection to walk (that cost the projector about 15 % of its time).
    del records
    settle_collector()
    topics = topic_names(RELAY_NS)
    ends = end_offsets(bootstrap, topics)
    result.update(projector_turns(bootstrap, ends, work, deadline, stages["projector"]))
    result["rebuild"] = bench_rebuild(bootstrap, topics, work / "rebuilt.sqlite", stages["rebuild"])
    result["records_on_topics"] = sum(ends.values())
    events = int(spec.get("rebuild_events", from_env().rebuild_events))
    if events:
        result["rebuild_day"] = bench_rebuild_day(
            bootstrap, int(spec["partitions"]), events, work / "day.sqlite", deadline,
            stages["rebuild_day"],
        )  # fmt: skip
    result["profiles"] = {k: v.summary() for k, v in stages.items() if wanted}
    write_result(result)


if __name__ == "__main__":
    main()

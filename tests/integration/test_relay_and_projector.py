"""The outbox relay and the projector against the real Kafka broker, on SQLite."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from eventsourcing.persistence import Tracking
from kafka import TopicPartition
from sqlalchemy import Engine, func, select

from domain.values import LocationKind, Money
from projections.db import make_engine
from projections.models import ConsumerOffset, SaleView, StockView, StreamGap
from projections.projector import FetchWait, Projector, _SeekToStored
from protos.retail.v1 import events_pb2
from services.application import RetailApp, SaleLineInput
from services.bus import EnvelopeProducer, ensure_topics, new_consumer, topic_names
from services.localkafka import LocalKafka
from services.relay import OutboxRelay

pytestmark = pytest.mark.kafka


@pytest.fixture
def app(tmp_path: Path) -> Iterator[RetailApp]:
    retail = RetailApp(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "ev.db")}
    )
    retail.register_sku("TINA-30", "Tina plush", "Mascots", Money(12800, "CNY"))
    retail.register_location("STORE-1", LocationKind.PARTNER_STORE, "S1", "Beijing", "Dongcheng")
    retail.register_location("POPUP-1", LocationKind.POPUP, "P1", "Shanghai", "Pudong")
    retail.open_popup("POPUP-1")
    yield retail
    retail.close()


@pytest.fixture
def topics(kafka_broker: LocalKafka, namespace: str) -> list[str]:
    names = topic_names(namespace)
    ensure_topics(kafka_broker.bootstrap, 3, names)
    return names


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'views.db'}")
    yield engine
    engine.dispose()


def make_projector(
    kafka_broker: LocalKafka, engine: Engine, topics: list[str], group: str
) -> Projector:
    consumer = new_consumer(kafka_broker.bootstrap, group, client_id="test-projector")
    projector = Projector(engine, consumer, group)
    projector.subscribe(topics)
    return projector


def drain(projector: Projector, until: int, timeout: float = 30.0) -> None:
    """Polls until `until` envelopes were seen (applied, dropped or rejected)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = projector.stats
        if stats.applied + stats.duplicates + stats.rejected >= until:
            return
        projector.poll_once(timeout_ms=200)
    raise AssertionError(f"projector saw {projector.stats} before the deadline, wanted {until}")


def on_hand(engine: Engine, sku: str, location: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(
            select(StockView.on_hand).where(StockView.sku == sku, StockView.location == location)
        ).scalar()


def relay_for(app: RetailApp, kafka_broker: LocalKafka, namespace: str) -> OutboxRelay:
    return OutboxRelay(app, EnvelopeProducer(kafka_broker.bootstrap), topic_namespace=namespace)


def test_the_relay_publishes_every_event_and_records_its_position_after_the_ack(
    app: RetailApp, kafka_broker: LocalKafka, namespace: str, topics: list[str]
) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    app.record_sale("T-1", "S-1", "STORE-1", "", None, [SaleLineInput("TINA-30", 3)], [])
    relay = relay_for(app, kafka_broker, namespace)
    try:
        while relay.run_once():
            pass
        head = app.recorder.max_notification_id()
        assert relay.position == head
        published = relay.published
        # A new relay (a restart) resumes from the recorded position and sends nothing again.
        again = relay_for(app, kafka_broker, namespace)
        assert again.position == head
        assert again.run_once() == 0
        again.producer.close()
    finally:
        relay.producer.close()

    consumer = new_consumer(kafka_broker.bootstrap, f"{namespace}check", client_id="check")
    consumer.subscribe(topics)
    seen: list[events_pb2.EventEnvelope] = []
    keys: dict[str, set[bytes]] = {}
    deadline = time.monotonic() + 30
    while len(seen) < published and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                envelope = events_pb2.EventEnvelope.FromString(record.value)
                if envelope.HasField("position_marker"):
                    assert envelope.position <= head
                    continue
                seen.append(envelope)
                keys.setdefault(envelope.stream_id, set()).add(record.key)
    consumer.close()
    assert len(seen) == published == len({e.position for e in seen})
    stock_streams = {e.stream_id for e in seen if e.HasField("stock_moved")}
    assert all(keys[s] == {b"TINA-30"} for s in stock_streams)


def test_the_projector_builds_the_stock_view_and_drops_redelivered_events(
    app: RetailApp, kafka_broker: LocalKafka, namespace: str, topics: list[str], engine: Engine
) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    app.record_sale("T-1", "S-1", "STORE-1", "", None, [SaleLineInput("TINA-30", 3)], [])
    # The relay dies after the broker acknowledged the batch but before it recorded its
    # position: its successor sends every event a second time.
    crashing = relay_for(app, kafka_broker, namespace)

    def crash(_tracking: Tracking) -> None:
        raise RuntimeError("killed before recording the position")

    crashing.tracking.insert_tracking = crash  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError):
        crashing.run_once()
    crashing.producer.close()
    successor = relay_for(app, kafka_broker, namespace)
    assert successor.position == 0
    successor.run_once()
    successor.producer.close()
    head = successor.published

    projector = make_projector(kafka_broker, engine, topics, f"{namespace}views")
    try:
        drain(projector, until=2 * head)
    finally:
        projector.close()
    assert projector.stats.applied == head
    assert projector.stats.duplicates == head
    assert on_hand(engine, "TINA-30", "STORE-1") == 7
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SaleView)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(StreamGap)).scalar() == 0


def test_a_restarted_projector_resumes_from_the_offsets_stored_with_its_rows(
    app: RetailApp, kafka_broker: LocalKafka, namespace: str, topics: list[str], engine: Engine
) -> None:
    app.receive_stock("TINA-30", "POPUP-1", 10, "DN-1")
    relay = relay_for(app, kafka_broker, namespace)
    relay.run_once()
    group = f"{namespace}views"
    first = make_projector(kafka_broker, engine, topics, group)
    try:
        drain(first, until=relay.published)
    finally:
        first.close()
    with engine.connect() as conn:
        progress = conn.execute(
            select(
                ConsumerOffset.next_offset, ConsumerOffset.end_offset, ConsumerOffset.position
            ).where(ConsumerOffset.consumer_group == group)
        ).all()
    assert len(progress) == 3 * 4  # every partition of every topic has its row
    assert all(next_offset == end for next_offset, end, _ in progress)
    assert min(position for *_, position in progress) == app.recorder.max_notification_id()

    app.record_sale("T-1", "S-9", "POPUP-1", "", None, [SaleLineInput("TINA-30", 4)], [])
    relay.run_once()
    relay.producer.close()
    second = make_projector(kafka_broker, engine, topics, group)
    try:
        drain(second, until=2)  # the sale and its stock movement, nothing older
    finally:
        second.close()
    assert second.stats.duplicates == 0
    assert on_hand(engine, "TINA-30", "POPUP-1") == 6


def test_two_projectors_in_one_group_share_the_partitions_and_build_one_view(
    app: RetailApp, kafka_broker: LocalKafka, namespace: str, topics: list[str], engine: Engine
) -> None:
    for n in range(30):
        app.receive_stock("TINA-30", "STORE-1" if n % 2 else "POPUP-1", 1, f"DN-{n}")
    relay = relay_for(app, kafka_broker, namespace)
    while relay.run_once():
        pass
    relay.producer.close()
    group = f"{namespace}shared"
    first = make_projector(kafka_broker, engine, topics, group)
    second = make_projector(kafka_broker, engine, topics, group)
    try:
        deadline = time.monotonic() + 60
        # Both members must hold partitions before the work is counted: the group rebalances.
        while not (first.consumer.assignment() and second.consumer.assignment()):
            assert time.monotonic() < deadline, "the group did not give both members partitions"
            first.poll_once(timeout_ms=100)
            second.poll_once(timeout_ms=100)
        while first.stats.applied + second.stats.applied < relay.published:
            assert time.monotonic() < deadline, (first.stats, second.stats)
            first.poll_once(timeout_ms=100)
            second.poll_once(timeout_ms=100)
        # A rebalance may still be under way (one member on the old generation's assignment):
        # wait until the members' assignments settle into a split.
        while True:
            mine = {(tp.topic, tp.partition) for tp in first.consumer.assignment()}
            theirs = {(tp.topic, tp.partition) for tp in second.consumer.assignment()}
            if mine and theirs and not mine & theirs and len(mine | theirs) == 3 * 4:
                break
            assert time.monotonic() < deadline, (mine, theirs)
            first.poll_once(timeout_ms=100)
            second.poll_once(timeout_ms=100)
    finally:
        first.close()
        second.close()
    assert mine and theirs and not mine & theirs  # each partition has one owner
    assert len(mine | theirs) == 3 * 4
    assert on_hand(engine, "TINA-30", "STORE-1") == 15
    assert on_hand(engine, "TINA-30", "POPUP-1") == 15


def test_an_idle_projector_waits_longer_per_fetch_and_a_new_record_still_comes_at_once(
    app: RetailApp, kafka_broker: LocalKafka, namespace: str, topics: list[str], engine: Engine
) -> None:
    group = f"{namespace}idle"
    consumer = new_consumer(kafka_broker.bootstrap, group, client_id="test-projector")
    # A long idle wait: a record that waited for it would be seen seconds late.
    projector = Projector(engine, consumer, group, fetch_wait=FetchWait(consumer, 8_000, 0.5))
    relay = relay_for(app, kafka_broker, namespace)
    try:
        while relay.run_once():  # the fixture's registrations first
            pass
        projector.subscribe(topics)
        drain(projector, until=relay.published)
        busy = projector.fetch_wait.current_ms
        assert busy == consumer.config["fetch_max_wait_ms"]
        deadline = time.monotonic() + 30
        while projector.fetch_wait.current_ms != 8_000 and time.monotonic() < deadline:
            projector.poll_once(timeout_ms=100)
        assert projector.fetch_wait.current_ms == 8_000
        for _ in range(10):  # the fetches sent before the wait grew have come back by now
            projector.poll_once(timeout_ms=100)

        app.receive_stock("TINA-30", "STORE-1", 4, "DN-9")
        relay.run_once()
        sent = time.monotonic()
        drain(projector, until=relay.published, timeout=30)
        assert time.monotonic() - sent < 4.0  # answered by the append, not by the wait
        assert projector.fetch_wait.current_ms == busy
    finally:
        relay.producer.close()
        projector.close()
    assert on_hand(engine, "TINA-30", "STORE-1") == 4


def test_a_starting_projector_joins_its_group_once_and_keeps_its_partitions(
    kafka_broker: LocalKafka,
    topics: list[str],
    engine: Engine,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A second join at start-up (kafka-python assigning against metadata it had not read yet)
    # is a rebalance nobody asked for, and once it left a projector without partitions.
    assigned: list[set[tuple[str, int]]] = []
    seek = _SeekToStored.on_partitions_assigned

    def counted(listener: _SeekToStored, partitions: Sequence[TopicPartition]) -> None:
        assigned.append({(tp.topic, tp.partition) for tp in partitions})
        seek(listener, partitions)

    monkeypatch.setattr(_SeekToStored, "on_partitions_assigned", counted)
    projector = make_projector(kafka_broker, engine, topics, f"{namespace}once")
    try:
        # Past the consumer's metadata refresh (5 s), which is what showed the topics anew.
        until = time.monotonic() + 6.5
        while time.monotonic() < until:
            projector.poll_once(timeout_ms=200)
        assert projector.consumer.assignment()
    finally:
        projector.close()
    assert assigned == [{(t, p) for t in topics for p in range(3)}]

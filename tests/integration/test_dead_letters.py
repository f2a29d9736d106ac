"""Poison messages on the real broker: each goes to the dead-letter topic; the projector goes on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from projections.db import make_engine
from projections.models import StockView
from projections.projector import Projector
from protos.retail.v1 import events_pb2
from services.bus import (
    DEAD_LETTER_TOPIC,
    STOCK_TOPIC,
    EnvelopeProducer,
    KafkaDeadLetters,
    ensure_topics,
    new_consumer,
    read_dead_letters,
    topic_names,
)
from services.localkafka import LocalKafka

pytestmark = pytest.mark.kafka


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'views.db'}")
    yield engine
    engine.dispose()


def moved(stream: str, version: int, on_hand: int) -> bytes:
    envelope = events_pb2.EventEnvelope(
        event_type="retail.StockItem.Moved",
        stream_id=stream,
        stream_version=version,
        position=version,
    )
    envelope.stock_moved.CopyFrom(
        events_pb2.StockMoved(
            sku="A-1", location="S-1", reason="received", quantity=1,
            levels=events_pb2.StockLevels(on_hand=on_hand),
        )
    )  # fmt: skip
    return envelope.SerializeToString()


def test_poison_messages_go_to_the_dead_letter_topic_and_the_projector_keeps_going(
    kafka_broker: LocalKafka, namespace: str, engine: Engine
) -> None:
    topics = topic_names(namespace)
    dead_topic = namespace + DEAD_LETTER_TOPIC
    ensure_topics(kafka_broker.bootstrap, 1, [*topics, dead_topic])
    producer = EnvelopeProducer(kafka_broker.bootstrap)
    stock = namespace + STOCK_TOPIC
    stream = "5f0c9d1e-0000-4000-8000-000000000001"
    unknown = events_pb2.EventEnvelope(event_type="retail.Future.Thing", stream_id=stream,
                                       stream_version=9)  # fmt: skip
    for value in (
        moved(stream, 1, 5),
        b"\xff\xff not protobuf",  # undecodable
        unknown.SerializeToString(),  # a payload this reader does not know
        moved(stream, 2, 7),
    ):
        producer.send(stock, b"A-1", value).get(timeout=30)
    producer.close()

    dead_producer = EnvelopeProducer(kafka_broker.bootstrap, client_id="dead")
    group = f"{namespace}views"
    projector = Projector(
        engine,
        new_consumer(kafka_broker.bootstrap, group, client_id="p"),
        group,
        KafkaDeadLetters(dead_producer, dead_topic),
    )
    try:
        projector.subscribe(topics)
        deadline = time.monotonic() + 30
        while projector.stats.applied + projector.stats.rejected < 4:
            assert time.monotonic() < deadline, projector.stats
            projector.poll_once(timeout_ms=200)
    finally:
        projector.close()
        dead_producer.close()
    assert (projector.stats.applied, projector.stats.rejected) == (2, 2)
    with engine.connect() as conn:
        assert conn.execute(select(StockView.on_hand)).scalar() == 7

    letters = read_dead_letters(kafka_broker.bootstrap, dead_topic)
    assert [(d.source_topic, d.source_offset) for d in letters] == [(stock, 1), (stock, 2)]
    assert letters[0].reason.startswith("undecodable")
    assert "retail.Future.Thing" in letters[1].reason
    assert letters[1].value == unknown.SerializeToString()

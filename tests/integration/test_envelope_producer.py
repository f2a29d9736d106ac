"""EnvelopeProducer.send_all against the real Kafka broker: the client's I/O thread is woken
once per call (services.bus), and nothing sent is lost, reordered or left waiting."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from services.bus import EnvelopeProducer, ensure_topics
from services.localkafka import LocalKafka

pytestmark = pytest.mark.kafka


@pytest.fixture
def producer(kafka_broker: LocalKafka) -> Iterator[EnvelopeProducer]:
    sender = EnvelopeProducer(kafka_broker.bootstrap, client_id="test-send-all")
    yield sender
    sender.close()


def _read(bootstrap: str, topic: str, partitions: int, count: int) -> dict[int, list[bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        got: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        for _ in range(100):  # at most 100 polls of 200 ms
            for tp, records in consumer.poll(timeout_ms=200).items():
                got[tp.partition].extend(r.value for r in records)
            if sum(map(len, got.values())) >= count:
                break
        return got
    finally:
        consumer.close()


def test_send_all_delivers_every_record_in_order_with_one_wakeup(
    kafka_broker: LocalKafka, namespace: str, producer: EnvelopeProducer
) -> None:
    topic = namespace + "send-all"
    ensure_topics(kafka_broker.bootstrap, 3, [topic])
    # By key, then to each partition by number, the way the relay sends events and markers;
    # the producer has no metadata for the topic yet, so send_all looks it up first.
    records: list[Any] = [(topic, f"k{n % 7}".encode(), f"event-{n}".encode()) for n in range(60)]
    records += [(topic, None, b"marker", p) for p in range(3)]
    results = producer.send_all(records)
    sent = [result.get(timeout=10) for result in results]  # every one acknowledged

    got = _read(kafka_broker.bootstrap, topic, 3, len(records))
    pairs = list(zip(records, sent, strict=True))
    for partition, values in got.items():
        expected = [record[2] for record, meta in pairs if meta.partition == partition]
        assert values == expected
        assert values[-1] == b"marker"  # each partition's marker after its events
    assert sum(map(len, got.values())) == len(records)


def test_a_send_that_fails_part_way_leaves_the_producer_as_it_was(
    kafka_broker: LocalKafka, namespace: str, producer: EnvelopeProducer
) -> None:
    topic = namespace + "send-all-fails"
    ensure_topics(kafka_broker.bootstrap, 1, [topic])
    with pytest.raises(ValueError, match="key or value"):
        producer.send_all([(topic, b"k", b"first"), (topic, None, None)])  # type: ignore[list-item]
    # The client's own sender is back: a later send is sent without send_all's wake-up.
    producer.send(topic, b"k", b"later").get(timeout=10)
    assert _read(kafka_broker.bootstrap, topic, 1, 2)[0] == [b"first", b"later"]

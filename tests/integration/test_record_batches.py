"""A consumer with BatchRecords reads what a plain kafka-python consumer reads from the real
broker: compressed batches, headers, missing keys and values, transaction markers, and a
start in the middle of a batch."""

from __future__ import annotations

from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from projections.record_batches import BatchRecords, faster_records
from services.bus import ensure_topics
from services.localkafka import LocalKafka

pytestmark = pytest.mark.kafka


def _read(consumer: KafkaConsumer, partitions: list[TopicPartition], start: int) -> list[Any]:
    """Every record from offset `start` of each partition to its end, in up to 100 polls."""
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, start)
    ends = consumer.end_offsets(partitions)
    got: list[Any] = []
    for _ in range(100):
        for records in consumer.poll(timeout_ms=200, max_records=7).values():
            got.extend(records)
        if all(consumer.position(tp) >= ends[tp] for tp in partitions):
            break
    consumer.close()
    return sorted(got, key=lambda r: (r.partition, r.offset))


def test_the_faster_decoding_reads_what_kafka_python_reads(
    kafka_broker: LocalKafka, namespace: str
) -> None:
    bootstrap = kafka_broker.bootstrap
    topic = namespace + "batches"
    ensure_topics(bootstrap, 2, [topic])
    plain = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    packed = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, compression_type="gzip")
    for n in range(40):
        producer = packed if n % 3 else plain
        headers = [("source", f"till-{n}".encode()), ("empty", b"")] if n % 4 == 0 else []
        key = None if n % 5 == 0 else f"k{n % 7}".encode()
        value = None if n % 11 == 1 else f"event-{n}".encode() * (1 + n % 9)
        producer.send(topic, key=key, value=value, headers=headers, partition=n % 2)
    for producer in (plain, packed):
        producer.flush(timeout=10)
        producer.close(timeout=10)
    # Transactions leave control batches (commit and abort markers) between the records.
    committing = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=namespace + "tx")
    committing.init_transactions()
    for abort in (False, True, False):
        committing.begin_transaction()
        for p in (0, 1):
            committing.send(topic, key=b"tx", value=f"abort={abort}".encode(), partition=p)
        if abort:
            committing.flush(timeout=10)  # on the broker before the abort marker
            committing.abort_transaction()
        else:
            committing.commit_transaction()
    committing.close(timeout=10)

    partitions = [TopicPartition(topic, p) for p in (0, 1)]
    for start in (0, 5):  # 5: inside a batch, whose records before it are skipped
        theirs = _read(KafkaConsumer(bootstrap_servers=bootstrap), partitions, start)
        faster = faster_records(KafkaConsumer(bootstrap_servers=bootstrap))
        assert faster._fetcher.PartitionRecords is BatchRecords
        ours = _read(faster, partitions, start)
        assert ours == theirs
        assert len(ours) == 2 * (20 - start) + 6  # aborted records too: read uncommitted

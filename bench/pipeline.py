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
  into one table, one transaction per polled batch (executemany with sqlite3).
- rebuild: `projections.rebuild.rebuild` of the relay's topics into fresh SQLite views.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import Deadline, read_spec, write_result
from bench.profile import StageProfile
from projections.db import make_engine
from projections.projector import Projector
from projections.rebuild import rebuild
from protos.retail.v1 import events_pb2
from services.application import RetailApp
from services.bus import EnvelopeProducer, ensure_topics, new_consumer, topic_names
from services.config import Settings
from services.envelopes import to_outgoing
from services.relay import TRACKING_NAME, OutboxRelay

RELAY_NS = "bench-relay."
RAW_NS = "bench-raw."


def reset_relay_position(events_db: str) -> None:
    with (
        contextlib.closing(sqlite3.connect(events_db)) as conn,
        conn,
        contextlib.suppress(sqlite3.OperationalError),  # no tracking table yet
    ):
        conn.execute("DELETE FROM tracking WHERE application_name = ?", (TRACKING_NAME,))


def bench_relay(
    app: RetailApp, bootstrap: str, deadline: Deadline, profile: StageProfile
) -> tuple[dict[str, Any], Any]:
    relay = OutboxRelay(app, EnvelopeProducer(bootstrap), topic_namespace=RELAY_NS)
    assert relay.position == 0, "the relay's position was not reset"
    relay.producer.open()
    for topic in topic_names(RELAY_NS):  # metadata is fetched before the clock starts
        relay.producer.partitions_for(topic)
    notifications = 0
    started = time.perf_counter()
    with profile:
        while not deadline.passed():
            done = relay.run_once()
            if done == 0:
                break
            notifications += done
    elapsed = time.perf_counter() - started
    relay.producer.close()
    return {
        "notifications": notifications,
        "events": relay.published,
        "seconds": elapsed,
        "rate": relay.published / elapsed if elapsed else 0.0,
        "caught_up": not deadline.passed(),
    }, relay


def envelopes_of(app: RetailApp, relay: OutboxRelay) -> list[tuple[str, bytes, bytes]]:
    """The records the relay sent (markers aside), made again by the same code, untimed."""
    out: list[tuple[str, bytes, bytes]] = []
    start = 0
    while True:
        page = app.recorder.select_notifications(start=start, limit=1000, inclusive_of_start=False)
        if not page:
            return out
        for notification in page:
            event = app.mapper.to_domain_event(notification)
            outgoing = to_outgoing(event, notification.id, app.name, relay._location)
            if outgoing is not None:
                out.append(
                    (RAW_NS + outgoing.topic, outgoing.key, outgoing.envelope.SerializeToString())
                )
        start = page[-1].id


def bench_raw_produce(
    bootstrap: str, records: list[tuple[str, bytes, bytes]], deadline: Deadline
) -> dict[str, Any]:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, client_id="bench-raw", acks="all", enable_idempotence=True,
        linger_ms=2, batch_size=256 * 1024, retries=2_147_483_647, delivery_timeout_ms=30_000,
        request_timeout_ms=10_000,
    )  # fmt: skip
    try:
        for topic in topic_names(RAW_NS):
            producer.partitions_for(topic)
        started = time.perf_counter()
        sent = [producer.send(topic, key=key, value=value) for topic, key, value in records]
        producer.flush(timeout=max(deadline.left(), 1.0))
        for result in sent:
            result.get(timeout=30)
        elapsed = time.perf_counter() - started
    finally:
        producer.close(timeout=10)
    return {
        "events": len(records),
        "seconds": elapsed,
        "rate": len(records) / elapsed if elapsed else 0.0,
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
) -> dict[str, Any]:
    engine = make_engine(f"sqlite:///{views}")
    consumer = new_consumer(bootstrap, "bench-projector", client_id="bench-projector")
    projector = Projector(engine, consumer, "bench-projector")
    try:
        projector.subscribe(topics)
        first = 0
        while not first and not deadline.passed():  # joining the group and the first batch
            first = projector.poll_once(timeout_ms=500)  # are not timed
        seen = first
        started = time.perf_counter()
        with profile:
            while seen < total and not deadline.passed():
                seen += projector.poll_once(timeout_ms=200)
        elapsed = time.perf_counter() - started
    finally:
        projector.close()
        engine.dispose()
    return {
        "records": seen,
        "events": projector.stats.applied,
        "batches": projector.stats.batches,
        "seconds": elapsed,
        "rate": (seen - first) / elapsed if elapsed else 0.0,
    }


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
        conn.execute("BEGIN")
        conn.executemany(upsert, rows)
        conn.execute("COMMIT")
        return count

    try:
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        first = 0
        while not first and not deadline.passed():  # as for the projector: the first batch
            first = apply(consumer.poll(timeout_ms=500))  # is not timed
        seen = first
        started = time.perf_counter()
        while seen < total and not deadline.passed():
            seen += apply(consumer.poll(timeout_ms=200))
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
        conn.close()
    return {
        "records": seen,
        "seconds": elapsed,
        "rate": (seen - first) / elapsed if elapsed else 0.0,
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


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    spec = read_spec()
    bootstrap, work = spec["bootstrap"], Path(spec["work_dir"])
    deadline = Deadline(float(spec["seconds"]))
    reset_relay_position(spec["events_db"])
    ensure_topics(bootstrap, int(spec["partitions"]), topic_names(RELAY_NS) + topic_names(RAW_NS))
    settings = Settings(data_dir=Path(spec["events_db"]).parent)
    app = RetailApp(env=settings.event_store_env())
    wanted = bool(spec.get("profile"))
    stages = {name: StageProfile(wanted) for name in ("relay", "projector", "rebuild")}
    try:
        relay_result, relay = bench_relay(app, bootstrap, deadline, stages["relay"])
        records = envelopes_of(app, relay)
    finally:
        app.close()
    result: dict[str, Any] = {"relay": relay_result}
    result["raw_produce"] = bench_raw_produce(bootstrap, records, deadline)
    topics = topic_names(RELAY_NS)
    ends = end_offsets(bootstrap, topics)
    total = sum(ends.values())
    result["projector"] = bench_projector(
        bootstrap, topics, total, work / "views.sqlite", deadline, stages["projector"]
    )
    result["raw_consume"] = bench_raw_consume(bootstrap, ends, work / "raw.sqlite", deadline)
    result["rebuild"] = bench_rebuild(bootstrap, topics, work / "rebuilt.sqlite", stages["rebuild"])
    result["records_on_topics"] = total
    result["profiles"] = {k: v.summary() for k, v in stages.items() if wanted}
    write_result(result)


if __name__ == "__main__":
    main()

"""The projector: a Kafka consumer group member that turns envelopes into view rows.

Exactly-once in effect: each polled batch's rows, the streams' applied versions and the next
Kafka offsets commit in one SQL transaction; on (re)assignment the consumer seeks to the stored
offsets; an event whose stream version was already applied is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from projections.builders import Row, UnknownEventError, rows_for
from projections.models import AppliedStream, Base, ConsumerOffset, StreamGap
from protos.retail.v1 import events_pb2

log = logging.getLogger(__name__)

TABLES: dict[str, Table] = dict(Base.metadata.tables)


@dataclass
class ProjectorStats:
    applied: int = 0
    duplicates: int = 0
    gaps: int = 0
    rejected: int = 0
    batches: int = 0
    last_batch_at: float = 0.0


@dataclass
class _Batch:
    rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    updates: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    gaps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: Row) -> None:
        rows = self.rows.setdefault(row.table, {})
        if not row.partial:
            rows[row.key] = dict(row.values)
        elif row.key in rows:
            rows[row.key].update(row.values)
        else:
            self.updates.setdefault(row.table, {}).setdefault(row.key, {}).update(row.values)


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE, for SQLite and PostgreSQL alike."""
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table)
    keys = [c.name for c in table.primary_key.columns]
    updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=updates), list(rows))


def update_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE the named columns of existing rows, found by primary key."""
    keys = [c.name for c in table.primary_key.columns]
    for row in rows:
        condition = [table.c[k] == row[k] for k in keys]
        conn.execute(table.update().where(*condition).values(
            {k: v for k, v in row.items() if k not in keys}))  # fmt: skip


class Projector:
    """Applies polled Kafka batches to the SQL views."""

    def __init__(self, engine: Engine, consumer: KafkaConsumer, group: str) -> None:
        self.engine = engine
        self.consumer = consumer
        self.group = group
        self.stats = ProjectorStats()

    def subscribe(self, topics: Sequence[str], timeout: float = 30.0) -> None:
        # Joining the group before the client knows the topics' partitions gets an empty
        # assignment that is only repaired at the next metadata refresh: learn them first.
        deadline = time.monotonic() + timeout
        for topic in topics:
            while not self.consumer.partitions_for_topic(topic):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Kafka does not know topic {topic!r}")
                time.sleep(0.1)
        self.consumer.subscribe(list(topics), listener=_SeekToStored(self))

    def stored_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        wanted = {(tp.topic, tp.partition) for tp in partitions}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ConsumerOffset.topic, ConsumerOffset.partition, ConsumerOffset.next_offset)
                .where(ConsumerOffset.consumer_group == self.group)
            ).all()  # fmt: skip
        return {
            TopicPartition(topic, partition): offset
            for topic, partition, offset in rows
            if (topic, partition) in wanted
        }

    def poll_once(self, timeout_ms: int = 100) -> int:
        """Polls one batch and applies it; answers how many records it held."""
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        count = sum(len(records) for records in polled.values())
        if count:
            self.apply(
                [
                    (tp.topic, tp.partition, r.offset, r.value)
                    for tp, rs in polled.items()
                    for r in rs
                ]
            )
        return count

    def apply(self, records: Sequence[tuple[str, int, int, bytes]]) -> None:
        """Applies (topic, partition, offset, value) records and offsets in one transaction."""
        batch = _Batch()
        decoded: list[tuple[str, int, int, events_pb2.EventEnvelope]] = []
        for topic, partition, offset, value in records:
            batch.offsets[(topic, partition)] = offset + 1
            envelope = events_pb2.EventEnvelope()
            try:
                envelope.ParseFromString(value)
            except DecodeError:
                self.stats.rejected += 1
                log.error("undecodable record %s[%d]@%d skipped", topic, partition, offset)
                continue
            decoded.append((topic, partition, offset, envelope))
        with self.engine.begin() as conn:
            batch.versions = self._load_versions(conn, {e.stream_id for *_, e in decoded})
            for topic, partition, offset, envelope in decoded:
                self._apply_one(batch, topic, partition, offset, envelope)
            for name, rows in batch.rows.items():
                upsert(conn, TABLES[name], list(rows.values()))
            for name, updates in batch.updates.items():
                update_rows(conn, TABLES[name], list(updates.values()))
            upsert(
                conn,
                TABLES[AppliedStream.__tablename__],
                [{"stream_id": s, "version": v} for s, v in batch.versions.items()],
            )
            if batch.gaps:
                conn.execute(TABLES[StreamGap.__tablename__].insert(), batch.gaps)
            upsert(
                conn,
                TABLES[ConsumerOffset.__tablename__],
                [
                    {"consumer_group": self.group, "topic": t, "partition": p, "next_offset": o}
                    for (t, p), o in batch.offsets.items()
                ],
            )
        self.stats.batches += 1
        self.stats.last_batch_at = time.monotonic()

    def _apply_one(
        self,
        batch: _Batch,
        topic: str,
        partition: int,
        offset: int,
        envelope: events_pb2.EventEnvelope,
    ) -> None:
        stream, version = envelope.stream_id, envelope.stream_version
        applied = batch.versions.get(stream, 0)
        if version <= applied:
            self.stats.duplicates += 1
            return
        if version != applied + 1:
            self.stats.gaps += 1
            log.warning(
                "gap in stream %s: expected version %d, got %d (%s[%d]@%d)",
                stream, applied + 1, version, topic, partition, offset,
            )  # fmt: skip
            batch.gaps.append(
                {"stream_id": stream, "expected_version": applied + 1, "got_version": version,
                 "topic": topic, "partition": partition, "offset": offset}
            )  # fmt: skip
        try:
            rows = rows_for(envelope)
        except UnknownEventError as error:
            self.stats.rejected += 1
            log.error("%s[%d]@%d skipped: %s", topic, partition, offset, error)
            return
        for row in rows:
            batch.add(row)
        batch.versions[stream] = version
        self.stats.applied += 1

    @staticmethod
    def _load_versions(conn: Connection, streams: set[str]) -> dict[str, int]:
        if not streams:
            return {}
        found: dict[str, int] = {}
        ids = sorted(streams)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = conn.execute(
                select(AppliedStream.stream_id, AppliedStream.version).where(
                    AppliedStream.stream_id.in_(chunk)
                )
            ).all()
            found.update({stream_id: version for stream_id, version in rows})
        return found

    def run(self, stop: threading.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                self.poll_once()
                backoff = 0.1
            except Exception:
                log.exception("projector batch failed; the batch will be polled again")
                self._rewind_to_stored()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _rewind_to_stored(self) -> None:
        """After a failed batch, go back to what the database says was applied."""
        assigned = list(self.consumer.assignment())
        stored = self.stored_offsets(assigned)
        for tp in assigned:
            if tp in stored:
                self.consumer.seek(tp, stored[tp])
            else:
                self.consumer.seek_to_beginning(tp)

    def close(self) -> None:
        self.consumer.close()


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        pass  # offsets are stored with the rows; nothing to commit here

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        stored = self.projector.stored_offsets(assigned)
        for tp in assigned:
            if tp in stored:
                self.projector.consumer.seek(tp, stored[tp])
            else:
                self.projector.consumer.seek_to_beginning(tp)


def run_in_thread(projector: Projector, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=projector.run, args=(stop,), name="projector", daemon=True)
    thread.start()
    return thread

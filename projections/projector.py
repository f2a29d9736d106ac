"""The projector: a Kafka consumer group member that turns envelopes into view rows.

Exactly-once in effect: each polled batch's rows, the streams' applied versions and the next
Kafka offsets commit in one SQL transaction; on (re)assignment the consumer seeks to the stored
offsets; an event whose stream version was already applied is dropped; a gap in a stream's
versions is recorded in `stream_gap`.

A member of the group presumed dead (its partitions given to another) may still hold a batch
it read before: committed late, it would set the views back (older stock levels, lower applied
versions). So a batch reads its partitions' stored offsets first and drops any record below
them (applied already), and before it writes it takes the partitions until it commits (SQLite:
the database's write lock, BEGIN IMMEDIATE; PostgreSQL: their offset rows, SELECT ... FOR
UPDATE) and checks that their offsets have not moved; if one has, nothing is written
(StaleBatchError) and the projector reads again from the stored offsets.

A record that cannot be decoded or applied goes to the dead-letter topic with the reason in a
header (acknowledged before the batch commits), and the projector keeps going.

Each partition's row also keeps the highest write-side position seen there. The relay marks
every partition after each batch, so the lowest of those positions is a position up to which
every view is complete: what read-your-writes waits for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

from google.protobuf.message import DecodeError
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from sqlalchemy import Connection, Engine, Table, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from projections import metrics
from projections.builders import (
    FACT_OWN,
    FACT_SHARED,
    Facts,
    Row,
    rows_for,
    superseding_key,
)
from projections.db import BulkWriter, WalCheckpointer, select_versions
from projections.models import AppliedStream, Base, ConsumerOffset, FactEvent, FactLine, StreamGap
from protos.retail.v1 import events_pb2

log = logging.getLogger(__name__)

TABLES: dict[str, Table] = dict(Base.metadata.tables)
FACT_EVENTS = TABLES[FactEvent.__tablename__]
FACT_LINES = TABLES[FactLine.__tablename__]


class StaleBatchError(RuntimeError):
    """Another member of the group committed a batch's partitions while it was being read
    (this member was presumed dead and its partitions given to another): nothing of it is
    written, and the projector reads again from the stored offsets."""


class DeadLetters(Protocol):
    """Where records that cannot be applied go; `send` answers once the broker has them."""

    def send(self, record: Record, reason: str) -> None: ...


class Record(Protocol):
    """A Kafka record as the projector needs it: kafka-python's ConsumerRecord is one, so a
    polled record is applied as it comes (no copy made per record)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes: ...
    @property
    def key(self) -> bytes | None: ...


class HandedRecord(NamedTuple):
    """A record handed to `Projector.apply` without Kafka (tests, tools)."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None


@dataclass
class ProjectorStats:
    applied: int = 0
    duplicates: int = 0
    gaps: int = 0
    rejected: int = 0
    markers: int = 0
    batches: int = 0
    last_batch_at: float = 0.0


@dataclass
class _Batch:
    rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    # The sales facts of each event (builders.Facts), by their row's key.
    facts: dict[tuple[Any, ...], Facts] = field(default_factory=dict)
    updates: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    poison: list[tuple[Record, str]] = field(default_factory=list)
    # The last record of each superseding key (builders.superseding_key), with its envelope.
    latest: dict[tuple[str, str], tuple[Record, events_pb2.EventEnvelope]] = field(
        default_factory=dict
    )

    def add(self, row: Row) -> None:
        # A builder's values are its row's own: kept as they are, merged into a new dict.
        values = row.values
        if isinstance(values, Facts):  # always full: an event's facts
            self.facts[row.key] = values
            return
        rows = self.rows.get(row.table)
        if rows is None:
            rows = self.rows[row.table] = {}
        if not row.partial:
            rows[row.key] = values
        elif row.key in rows:
            rows[row.key] = {**rows[row.key], **values}
        else:
            updates = self.updates.setdefault(row.table, {})
            updates[row.key] = {**updates.get(row.key, {}), **values}


def write_facts(writer: BulkWriter, conn: Connection, facts: Collection[Facts]) -> None:
    """Inserts events' sales facts: each event's fact_event row and its fact_line rows, each
    line with its event's ids (the first of the values they share)."""
    events = [f.shared for f in facts if f.own]
    writer.insert(conn, FACT_EVENTS, FACT_SHARED, events)
    lines = [(f.own, f.shared[:1]) for f in facts]
    writer.insert_groups(conn, FACT_LINES, FACT_OWN, FACT_SHARED[:1], lines)


class FetchWait:
    """How long the broker may hold a fetch that finds nothing new: the consumer's setting
    while records flow, `idle_ms` once none came for `idle_after` seconds.

    A record appended while a fetch waits answers it at once, so the longer wait adds nothing
    to the projection lag when the projector wakes up; what it saves is the broker's work for
    an idle consumer, which asks again as soon as a fetch comes back empty. Measured on this
    machine with the backend idle: the broker used 0.10-0.34 cores serving the projector's
    fetches at 50 ms (0.04-0.10 at 500 ms), taken from the API beside it (GetStock at 64 in
    flight 2,473 -> 2,807 calls/s). The short wait stays while busy: kafka-python keeps one
    fetch in flight per broker, and a partition left out of it (its last records not yet
    polled) waits for it to come back: 500 ms throughout took the projection lag's p99 at
    half load from 132-220 ms to 288 ms.

    kafka-python reads the wait from its fetcher's settings for every fetch it sends and has
    no public way to change it after the consumer is built; without that setting (another
    client version) the consumer keeps its own wait."""

    def __init__(
        self, consumer: KafkaConsumer | None, idle_ms: int = 500, idle_after: float = 1.0
    ) -> None:
        config = getattr(getattr(consumer, "_fetcher", None), "config", None)
        if not (isinstance(config, dict) and isinstance(config.get("fetch_max_wait_ms"), int)):
            config = None
            if consumer is not None:
                log.info("the consumer's fetch wait cannot be changed: it stays as configured")
        self._config: dict[str, Any] | None = config
        self.busy_ms = config["fetch_max_wait_ms"] if config is not None else 0
        self.idle_ms = max(idle_ms, self.busy_ms)
        self.idle_after = idle_after
        self._last_records = time.monotonic()

    @property
    def current_ms(self) -> int | None:
        return None if self._config is None else int(self._config["fetch_max_wait_ms"])

    def polled(self, records: int) -> None:
        """Called after every poll with the number of records it brought."""
        if self._config is None:
            return
        now = time.monotonic()
        if records:
            self._last_records = now
            self._config["fetch_max_wait_ms"] = self.busy_ms
        elif now - self._last_records >= self.idle_after:
            self._config["fetch_max_wait_ms"] = self.idle_ms


def _refused(record: Record, error: Exception) -> tuple[Record, str]:
    """A record whose rows cannot be built, with the reason. The builders read nothing but
    the envelope, so whatever they raise (an unknown payload, a value out of range such as a
    time whose local day is past the year 9999) would be raised again on every attempt: the
    record goes to the dead letters and the projector keeps going."""
    return record, f"{type(error).__name__}: {error}"


class Projector:
    """Applies polled Kafka batches to the SQL views."""

    def __init__(
        self,
        engine: Engine,
        consumer: KafkaConsumer,
        group: str,
        dead_letters: DeadLetters | None = None,
        fetch_wait: FetchWait | None = None,
        fresh: bool = False,
    ) -> None:
        """`fresh`: the views start empty and this projector is the only one applying the
        streams of its records (a rebuild's process: each stream is on one partition). The
        streams' applied versions are then kept in memory instead of read back for every
        batch and upserted with it, and `write_versions` stores them once at the end."""
        self.engine = engine
        self.consumer = consumer
        self.group = group
        self.dead_letters = dead_letters
        self._versions: dict[str, int] | None = {} if fresh else None
        self.stats = ProjectorStats()
        self.writer = BulkWriter(engine.dialect)
        self.checkpointer = WalCheckpointer.for_engine(engine)
        self._sqlite = engine.dialect.name == "sqlite"
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        offsets = TABLES[ConsumerOffset.__tablename__]
        self._group_query = select(
            offsets.c.topic, offsets.c.partition, offsets.c.next_offset
        ).where(offsets.c.consumer_group == group)
        self.fetch_wait = fetch_wait if fetch_wait is not None else FetchWait(consumer)

    def subscribe(self, topics: Sequence[str], timeout: float = 30.0) -> None:
        # Joining the group before the client knows the topics' partitions gets an empty
        # assignment that is only repaired at the next metadata refresh: learn them first.
        deadline = time.monotonic() + timeout
        every: list[tuple[str, int]] = []
        for topic in topics:
            while not (partitions := self.consumer.partitions_for_topic(topic)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Kafka does not know topic {topic!r}")
                time.sleep(0.1)
            every.extend((topic, p) for p in partitions)
        self._register_partitions(every)
        self.consumer.subscribe(list(topics), listener=_SeekToStored(self))
        # The topics are known already, so subscribing asks for no metadata, and kafka-python
        # would make its first assignment against an empty picture of the topics, then see
        # them at the next refresh and join the group again (30 times in 400 starts). A
        # fetch of the metadata now gives it the picture before it joins.
        self.consumer.topics()

    def _register_partitions(self, partitions: list[tuple[str, int]]) -> None:
        """A row per partition from the start, so no partition is missed in the watermark."""
        with self.engine.begin() as conn:
            self._add_offset_rows(conn, partitions)

    def _add_offset_rows(self, conn: Connection, partitions: Iterable[tuple[str, int]]) -> None:
        """Each partition's offset row, at offset 0, unless it has one."""
        table = TABLES[ConsumerOffset.__tablename__]
        rows = [
            {"consumer_group": self.group, "topic": t, "partition": p, "next_offset": 0,
             "position": 0, "end_offset": 0}
            for t, p in partitions
        ]  # fmt: skip
        conn.execute(self._insert(table).on_conflict_do_nothing(), rows)

    def stored_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        wanted = {(tp.topic, tp.partition) for tp in partitions}
        with self.engine.connect() as conn:
            stored = self._group_offsets(conn, wanted)
        return {TopicPartition(*where): offset for where, offset in stored.items() if offset > 0}

    def _group_offsets(
        self, conn: Connection, partitions: set[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """The partitions' stored next offsets, from all of the group's rows (a few dozen):
        41 us against 330 us for the rows of 24 partitions by (topic, partition) IN."""
        rows = conn.execute(self._group_query)
        return {
            (topic, partition): offset
            for topic, partition, offset in rows
            if (topic, partition) in partitions
        }

    def poll_once(self, timeout_ms: int = 100) -> int:
        """Polls one batch and applies it; answers how many records it held."""
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        records = [r for rs in polled.values() for r in rs]
        self.fetch_wait.polled(len(records))
        if records:
            self.apply(records)
        return len(records)

    def apply(self, records: Sequence[Record]) -> None:
        """Applies records, their dead letters and their offsets in one transaction; a batch
        that fails counts nothing in `stats`."""
        before = replace(self.stats)
        try:
            self._apply(records, before)
        except BaseException:
            vars(self.stats).update(vars(before))
            raise

    def _apply(self, records: Sequence[Record], before: ProjectorStats) -> None:
        batch = _Batch()
        parse = events_pb2.EventEnvelope.FromString
        parsed: list[tuple[Record, events_pb2.EventEnvelope | None, str]] = []
        for record in records:
            try:
                parsed.append((record, parse(record.value), ""))
            except DecodeError as error:
                parsed.append((record, None, f"undecodable: {error}"))
        partitions = {(r.topic, r.partition) for r in records}
        with self.engine.begin() as conn:
            if self.checkpointer is not None:
                self.checkpointer.take_over(conn)
            stored = self._stored_offsets(conn, partitions)
            decoded = self._sort(batch, parsed, self._floors(stored))
            batch.versions = self._applied_versions(conn, {e.stream_id for _, e, _ in decoded})
            applied = dict(batch.versions)
            for record, envelope, kind in decoded:
                self._apply_one(batch, record, envelope, kind)
            for record, envelope in batch.latest.values():  # after an item's opening
                self._build_latest(batch, record, envelope)
            self._claim(conn, partitions, stored)
            write = self.writer
            for name, rows in batch.rows.items():
                write.upsert(conn, TABLES[name], rows.values())
            if batch.facts:
                write_facts(write, conn, batch.facts.values())
            for name, updates in batch.updates.items():
                write.update(conn, TABLES[name], updates.values())
            self._store_versions(conn, batch.versions, applied)
            if batch.gaps:
                conn.execute(TABLES[StreamGap.__tablename__].insert(), batch.gaps)
            self._store_progress(conn, batch)
            # Dead letters are durable in Kafka before the offsets that skip them commit.
            for record, reason in batch.poison:
                self._dead_letter(record, reason)
        self._committed(batch, before)

    def _stored_offsets(
        self, conn: Connection, partitions: set[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """The partitions' stored next offsets (none for a rebuild's fresh projector)."""
        if self._versions is not None or not partitions:
            return {}
        return self._group_offsets(conn, partitions)

    def _claim(
        self, conn: Connection, partitions: set[tuple[str, int]], read: dict[tuple[str, int], int]
    ) -> None:
        """Takes the batch's partitions until the transaction ends (see the module's
        docstring) and checks that their offsets are still those the batch was read with."""
        if self._versions is not None or not partitions:
            return  # a rebuild: the only reader of its partitions, into fresh tables
        if self._sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # nothing written yet: no transaction
        claimed = self._locked_offsets(conn, partitions)
        missing = partitions - claimed.keys()
        if missing:  # rows to lock: a partition's first batch, or deleted (an operator's replay)
            self._add_offset_rows(conn, sorted(missing))
            claimed.update(self._locked_offsets(conn, missing))
        for (topic, partition), offset in claimed.items():
            if offset != read.get((topic, partition), 0):
                raise StaleBatchError(
                    f"{topic}[{partition}] was committed up to offset {offset} by another "
                    f"member of consumer group {self.group!r} while this batch was read at "
                    f"{read.get((topic, partition), 0)}: it is read again from there"
                )

    def _locked_offsets(
        self, conn: Connection, partitions: set[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        if self._sqlite:  # the transaction holds the database's write lock already
            return self._group_offsets(conn, partitions)
        table = TABLES[ConsumerOffset.__tablename__]
        query = (
            select(table.c.topic, table.c.partition, table.c.next_offset)
            .where(
                table.c.consumer_group == self.group,
                tuple_(table.c.topic, table.c.partition).in_(sorted(partitions)),
            )
            .with_for_update()  # these partitions' rows only: other members' stay free
        )
        return {(topic, partition): offset for topic, partition, offset in conn.execute(query)}

    def _floors(self, stored: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """The offset below which a partition's records were applied already: the stored
        one, unless the partition's log now ends below it (the topic was made again, or a
        leader without the last records took over): then its records are new, and only
        their stream versions tell which events were applied."""
        if self.consumer is None:
            return stored
        floors = dict(stored)
        for (topic, partition), offset in stored.items():
            end = self.consumer.highwater(TopicPartition(topic, partition))
            if end is not None and end < offset:
                log.warning(
                    "%s[%d] ends at offset %d, below the %d consumer group %r applied up to: "
                    "the log was made again or cut short; its records are applied from where "
                    "the consumer is, events applied before are dropped by stream version",
                    topic, partition, end, offset, self.group,
                )  # fmt: skip
                floors[(topic, partition)] = 0
        return floors

    def _sort(
        self,
        batch: _Batch,
        parsed: list[tuple[Record, events_pb2.EventEnvelope | None, str]],
        floors: dict[tuple[str, int], int],
    ) -> list[tuple[Record, events_pb2.EventEnvelope, str]]:
        """The batch's offsets, positions and poison, and the envelopes left to apply with
        their payload's name:
        records below their partition's floor (`_floors`) are dropped as already applied
        (applied again, they would set the partition's stored offset back)."""
        offsets, positions = batch.offsets, batch.positions
        decoded: list[tuple[Record, events_pb2.EventEnvelope, str]] = []
        for record, envelope, problem in parsed:
            where = (record.topic, record.partition)
            if record.offset < floors.get(where, 0):
                self.stats.duplicates += 1
                continue
            if record.offset >= offsets.get(where, 0):
                offsets[where] = record.offset + 1
            if envelope is None:
                batch.poison.append((record, problem))
                continue
            if envelope.position > positions.get(where, 0):
                positions[where] = envelope.position
            kind = envelope.WhichOneof("payload")
            if kind == "position_marker":
                self.stats.markers += 1
                continue
            decoded.append((record, envelope, kind or ""))
        return decoded

    def _committed(self, batch: _Batch, before: ProjectorStats) -> None:
        if self._versions is not None:  # the batch's versions are applied now
            self._versions.update(batch.versions)
        self._observe(batch, before)
        self.stats.batches += 1
        self.stats.last_batch_at = time.monotonic()

    def _applied_versions(self, conn: Connection, streams: set[str]) -> dict[str, int]:
        known = self._versions
        if known is None:
            return select_versions(conn, streams)
        return {s: known[s] for s in streams if s in known}

    def _store_versions(
        self, conn: Connection, versions: dict[str, int], applied: dict[str, int]
    ) -> None:
        if self._versions is not None:
            return  # kept in memory until write_versions
        changed = ((s, v) for s, v in versions.items() if applied.get(s) != v)
        self._upsert_versions(conn, changed)

    def _upsert_versions(self, conn: Connection, versions: Iterable[tuple[str, int]]) -> None:
        rows = [{"stream_id": s, "version": v} for s, v in versions]
        self.writer.upsert(conn, TABLES[AppliedStream.__tablename__], rows)

    def write_versions(self) -> None:
        """Stores the applied versions a `fresh` projector kept in memory, each stream's row
        written once (upserted with every batch, a stream's row was written once per batch
        it had events in); nothing for any other projector."""
        if not self._versions:
            return
        # In key order, SQLite appends to its index pages instead of splitting them at random:
        # 305,000 streams took 0.81-0.85 s that way and 1.07-1.23 s unsorted.
        with self.engine.begin() as conn:
            self._upsert_versions(conn, sorted(self._versions.items()))

    def _observe(self, batch: _Batch, before: ProjectorStats) -> None:
        for (topic, partition), next_offset in batch.offsets.items():
            labels = (topic, str(partition))
            metrics.LAG.labels(*labels).set(
                self._end_offset(topic, partition, next_offset) - next_offset
            )
            if (topic, partition) in batch.positions:
                metrics.POSITION.labels(*labels).set(batch.positions[(topic, partition)])
        stats = self.stats
        for outcome, count in (
            ("applied", stats.applied - before.applied),
            ("duplicate", stats.duplicates - before.duplicates),
            ("dead_letter", stats.rejected - before.rejected),
            ("marker", stats.markers - before.markers),
        ):
            if count:
                metrics.EVENTS.labels(outcome).inc(count)

    def _store_progress(self, conn: Connection, batch: _Batch) -> None:
        """Next offsets, end offsets and the highest position seen, per partition."""
        self.writer.upsert(
            conn,
            TABLES[ConsumerOffset.__tablename__],
            [
                {"consumer_group": self.group, "topic": topic, "partition": partition,
                 "next_offset": next_offset,
                 "end_offset": self._end_offset(topic, partition, next_offset),
                 "position": batch.positions.get((topic, partition), 0)}
                for (topic, partition), next_offset in batch.offsets.items()
            ],
            keep_highest=("position",),
        )  # fmt: skip

    def _end_offset(self, topic: str, partition: int, next_offset: int) -> int:
        if self.consumer is None:
            return next_offset
        end = self.consumer.highwater(TopicPartition(topic, partition))
        return max(int(end), next_offset) if end is not None else next_offset

    def _dead_letter(self, record: Record, reason: str) -> None:
        self.stats.rejected += 1
        log.error(
            "%s[%d]@%d to the dead-letter topic: %s",
            record.topic, record.partition, record.offset, reason,
        )  # fmt: skip
        if self.dead_letters is not None:
            self.dead_letters.send(record, reason)

    def _apply_one(
        self, batch: _Batch, record: Record, envelope: events_pb2.EventEnvelope, kind: str
    ) -> None:
        stream, version = envelope.stream_id, envelope.stream_version
        applied = batch.versions.get(stream, 0)
        if version <= applied:
            self.stats.duplicates += 1
            return
        rows: list[Row] = []
        superseding = superseding_key(envelope, kind)
        if superseding is not None:
            # Only the batch's last envelope of each such key is built (in `apply`): building
            # the others' rows to overwrite them was 8 % of the time on a bench run's events
            # (70,192 stock movements, 9,757 stock rows written).
            batch.latest[superseding] = (record, envelope)
        else:
            try:
                rows = rows_for(envelope, kind)
            except Exception as error:  # whatever it is, it repeats: see _refused
                batch.poison.append(_refused(record, error))
                return
        if version != applied + 1:
            self.stats.gaps += 1
            log.warning(
                "gap in stream %s: expected version %d, got %d (%s[%d]@%d)",
                stream, applied + 1, version, record.topic, record.partition, record.offset,
            )  # fmt: skip
            batch.gaps.append(
                {"stream_id": stream, "expected_version": applied + 1, "got_version": version,
                 "topic": record.topic, "partition": record.partition, "offset": record.offset}
            )  # fmt: skip
        for row in rows:
            batch.add(row)
        batch.versions[stream] = version
        self.stats.applied += 1

    def _build_latest(
        self, batch: _Batch, record: Record, envelope: events_pb2.EventEnvelope
    ) -> None:
        """Builds the row a key's last movement sets; one that cannot be built goes to the
        dead letters like any other, its version not counted as applied (so it is applied
        when sent again once fixed; the next of its stream is noted as a gap meanwhile)."""
        try:
            rows = rows_for(envelope)
        except Exception as error:  # whatever it is, it repeats: see _refused
            batch.poison.append(_refused(record, error))
            batch.versions[envelope.stream_id] = envelope.stream_version - 1
            self.stats.applied -= 1
            return
        for row in rows:
            batch.add(row)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                self.poll_once()
                backoff = 0.1
            except StaleBatchError as stale:
                log.warning("projector batch not written: %s", stale)
                self._rewind_to_stored()
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
        if self.checkpointer is not None:
            self.checkpointer.stop()
        if self.consumer is not None:
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

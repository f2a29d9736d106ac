"""The one thin typed wrapper around kafka-python: topics, an envelope producer, a consumer factory.

Nothing here touches the network in a constructor; `open()`/`ensure_topics()` do.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import DefaultPartitioner, murmur2

from projections.projector import Record
from projections.record_batches import faster_records

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC = "retail.deadletter.v1"
CATALOG_TOPIC = "retail.catalog.v1"
STOCK_TOPIC = "retail.stock.v1"
SALES_TOPIC = "retail.sales.v1"
ORDERS_TOPIC = "retail.orders.v1"
# kafka-python backs off up to 30 s between reconnects; after a broker restart that leaves
# the relay and projectors idle long after the broker is back (measured up to 38 s). One
# second, the Java client's default, brings them back within a few seconds.
RECONNECT_BACKOFF_MAX_MS = 1_000
# A request the broker has not answered in this long is given up: the connection is closed
# and the request tried again. kafka-python's default is 30 s; once, in a fresh-clone test
# run, a projector's SyncGroup went unanswered (its group had just joined twice at start-up)
# and the views stayed empty for the test's whole 30 s. Every request these clients send is
# answered within milliseconds on a healthy broker (fetches wait at most fetch_max_wait_ms,
# a JoinGroup gets a timeout of its own sized for rebalances).
REQUEST_TIMEOUT_MS = 10_000

EVENT_TOPICS = (CATALOG_TOPIC, STOCK_TOPIC, SALES_TOPIC, ORDERS_TOPIC)


class SendResult(Protocol):
    def get(self, timeout: float | None = None) -> Any: ...


def topic_names(namespace: str, topics: Iterable[str] = EVENT_TOPICS) -> list[str]:
    """The physical topic names of logical ones under a deployment's namespace."""
    return [namespace + topic for topic in topics]


def ensure_topics(bootstrap: str, partitions: int, topics: Iterable[str]) -> None:
    """Creates the event topics if missing (the broker does not auto-create)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="retail-admin")
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return
        # Another process may create them first.
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                [NewTopic(t, partitions, 1, topic_configs={"retention.ms": "-1"}) for t in missing]
            )
        log.info("created topics %s", ", ".join(missing))
    finally:
        admin.close()


class KeyedPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """The default partitioner's choice (murmur2 of the key, as the Java client: one stream
    keeps one partition) for less: a key's hash is kept, since a stock item's key comes back
    with every movement, and a topic's partition list is sorted once, not per record. The
    default took 10 % of the relay's time (cProfile, POS events)."""

    def __init__(self, keep: int = 100_000) -> None:
        self.keep = keep
        self._hashes: dict[bytes, int] = {}
        self._partitions: dict[str, list[int]] = {}

    def partition(  # type: ignore[no-untyped-def]
        self, topic, key, serialized_key, value, serialized_value, cluster
    ) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            return super().partition(  # type: ignore[no-any-return]
                topic, key, serialized_key, value, serialized_value, cluster
            )
        ordered = self._partitions.get(topic)
        if ordered is None or len(ordered) != len(partitions):
            ordered = self._partitions[topic] = sorted(partitions)
        hashed = self._hashes.get(serialized_key)
        if hashed is None:
            if len(self._hashes) >= self.keep:
                self._hashes.clear()
            hashed = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        return ordered[hashed % len(ordered)]


# A record for EnvelopeProducer.send_all: (topic, key, value) or (topic, key, value, partition).
SendRecord = tuple[str, bytes | None, bytes] | tuple[str, bytes | None, bytes, int]


class _Unwoken:
    """A kafka-python producer's sender, as the producer's own calls see it while
    `EnvelopeProducer.send_all` runs: everything but `wakeup` goes to the sender."""

    def __init__(self, sender: Any) -> None:
        self._sender = sender

    def wakeup(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sender, name)


class EnvelopeProducer:
    """Sends serialised envelopes with acks from every in-sync replica and idempotence on."""

    def __init__(self, bootstrap: str, client_id: str = "retail-relay") -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self._producer: KafkaProducer | None = None

    def open(self) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                acks="all",
                enable_idempotence=True,
                partitioner=KeyedPartitioner(),
                linger_ms=2,
                batch_size=256 * 1024,
                retries=2_147_483_647,
                delivery_timeout_ms=30_000,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            )

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> SendResult:
        self.open()
        assert self._producer is not None
        return self._producer.send(  # type: ignore[no-any-return]
            topic, key=key, value=value, partition=partition, headers=headers
        )

    def send_all(self, records: Sequence[SendRecord]) -> list[SendResult]:
        """Sends (topic, key, value) or (topic, key, value, partition) records in a row, then
        wakes the client's I/O thread once.

        kafka-python's send wakes that thread whenever a record starts a new batch: for the
        first record a relay call sends to each partition, and again for its markers, up to
        48 times a call with the default 24 partitions. Each time the thread took the GIL
        from the relay's to find nothing ready to send (linger_ms); at half of the POS
        scenario's load it had 19% of the relay/projector process's samples (py-spy), the
        relay's own thread 30%. Woken once a send_all (a relay call has one for its events
        and one for its markers), measured on this machine at 320 sales/s (15 s open loop,
        four runs each in turns, after one run each to warm up): projection lag p50 119, 90,
        79, 90 -> 83, 70, 66, 76 ms, p99 284, 190, 172, 177 -> 165, 135, 126, 138 ms.

        The topics' partitions are looked up first: a send to a topic the client has no
        metadata for waits for it, and that wait needs the I/O thread woken. Without the
        client's attributes this relies on (another client version) each send wakes it as
        before. A send from another thread meanwhile would wait for the same wake-up: each
        EnvelopeProducer is used by one thread (the relay's, the dead letters' own)."""
        for topic in {record[0] for record in records}:
            self.partitions_for(topic)
        producer = self._producer
        sender: Any = getattr(producer, "_sender", None)
        if producer is None or not callable(getattr(sender, "wakeup", None)):
            return [self.send(*record) for record in records]
        producer._sender = _Unwoken(sender)  # the producer's own calls see this one
        try:
            return [self.send(*record) for record in records]
        finally:
            producer._sender = sender
            sender.wakeup()

    def partitions_for(self, topic: str) -> list[int]:
        self.open()
        assert self._producer is not None
        return sorted(self._producer.partitions_for(topic) or ())

    def flush(self, timeout: float = 30.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=timeout)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=10)


def new_consumer(bootstrap: str, group: str, client_id: str, **overrides: Any) -> KafkaConsumer:
    """A consumer whose position is owned by the caller: auto-commit off, earliest by default."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 2000,
        "fetch_max_wait_ms": 50,
        # The broker's minimum: a member that died is replaced within six seconds.
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 2_000,
        # New partitions and topics are noticed within seconds, not the default five minutes.
        "metadata_max_age_ms": 5_000,
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }
    options.update(overrides)
    return faster_records(KafkaConsumer(**options))


class KafkaDeadLetters:
    """Sends records the projector cannot apply to the dead-letter topic, reason in headers."""

    def __init__(self, producer: EnvelopeProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def send(self, record: Record, reason: str) -> None:
        headers = [
            ("reason", reason.encode()),
            ("source-topic", record.topic.encode()),
            ("source-partition", str(record.partition).encode()),
            ("source-offset", str(record.offset).encode()),
        ]
        self.producer.send(self.topic, record.key, record.value, headers=headers).get(timeout=30)


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    partition: int
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes


def read_dead_letters(bootstrap: str, topic: str, timeout: float = 10.0) -> list[DeadLetter]:
    """Every record on the dead-letter topic, read from the start without joining a group."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="retail-dead-letters"
    )
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout:.0f}s")
            for tp, records in consumer.poll(timeout_ms=200).items():
                for r in records:
                    headers = {k: v.decode(errors="replace") for k, v in r.headers or []}
                    letters.append(
                        DeadLetter(
                            offset=r.offset, partition=tp.partition,
                            reason=headers.get("reason", ""),
                            source_topic=headers.get("source-topic", ""),
                            source_partition=int(headers.get("source-partition", "-1")),
                            source_offset=int(headers.get("source-offset", "-1")),
                            key=r.key, value=r.value,
                        )
                    )  # fmt: skip
        return sorted(letters, key=lambda d: (d.partition, d.offset))
    finally:
        consumer.close()

"""The one thin typed wrapper around kafka-python: topics, an envelope producer, a consumer factory.

Nothing here touches the network in a constructor; `open()`/`ensure_topics()` do.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

CATALOG_TOPIC = "retail.catalog.v1"
STOCK_TOPIC = "retail.stock.v1"
SALES_TOPIC = "retail.sales.v1"
EVENT_TOPICS = (CATALOG_TOPIC, STOCK_TOPIC, SALES_TOPIC)


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
                linger_ms=2,
                batch_size=256 * 1024,
                retries=2_147_483_647,
                delivery_timeout_ms=30_000,
                request_timeout_ms=10_000,
            )

    def send(self, topic: str, key: bytes, value: bytes) -> SendResult:
        self.open()
        assert self._producer is not None
        return self._producer.send(topic, key=key, value=value)  # type: ignore[no-any-return]

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
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 2_000,
        # New partitions and topics are noticed within seconds, not the default five minutes.
        "metadata_max_age_ms": 5_000,
    }
    options.update(overrides)
    return KafkaConsumer(**options)

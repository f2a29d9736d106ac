"""EnvelopeProducer.send_all wakes the client's I/O thread once, with a stand-in client that
wakes it the way kafka-python's send does (no broker)."""

from __future__ import annotations

from typing import Any

import pytest

from services.bus import EnvelopeProducer


class _Sender:
    def __init__(self) -> None:
        self.wakeups = 0

    def wakeup(self) -> None:
        self.wakeups += 1


class _Client:
    """kafka-python's KafkaProducer as far as send_all meets it: each send to a partition
    not sent to before starts a batch and wakes the sender."""

    def __init__(self) -> None:
        self._sender = _Sender()
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.batches: set[tuple[str, int | None]] = set()
        self.lookups: list[str] = []

    def partitions_for(self, topic: str) -> set[int]:
        self.lookups.append(topic)
        return {0, 1}

    def send(
        self,
        topic: str,
        key: bytes | None = None,
        value: bytes = b"",
        partition: int | None = None,
        headers: Any = None,
    ) -> None:
        if value == b"refused":
            raise ValueError("refused")
        self.sent.append((topic, key, value, partition))
        if (topic, partition) not in self.batches:
            self.batches.add((topic, partition))
            self._sender.wakeup()


def _producer() -> tuple[EnvelopeProducer, _Client]:
    producer = EnvelopeProducer("unused:9092")
    client = _Client()
    producer._producer = client
    return producer, client


def test_send_all_wakes_the_sender_once_after_the_last_record() -> None:
    producer, client = _producer()
    records: list[Any] = [("a", b"k", b"v1", 0), ("a", b"k", b"v2", 1), ("b", None, b"m", 0)]
    producer.send_all(records)
    assert client._sender.wakeups == 1
    assert [value for _, _, value, _ in client.sent] == [b"v1", b"v2", b"m"]
    assert sorted(client.lookups) == ["a", "b"]  # metadata before any send
    producer.send("c", None, b"alone")  # outside send_all the client wakes it as it likes
    assert client._sender.wakeups == 2


def test_a_failed_send_gives_the_client_its_sender_back_and_still_wakes_it() -> None:
    producer, client = _producer()
    sender = client._sender
    with pytest.raises(ValueError, match="refused"):
        producer.send_all([("a", None, b"v1", 0), ("a", None, b"refused", 1)])
    assert client._sender is sender
    assert sender.wakeups == 1  # what was sent before the failure goes out

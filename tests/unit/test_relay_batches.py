"""The relay's batching, with a producer that records what it is given (no broker)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from protos.retail.v1 import events_pb2
from services.application import RetailApp
from services.bus import EVENT_TOPICS, EnvelopeProducer
from services.relay import TRACKING_NAME, OutboxRelay

PARTITIONS = [0, 1]


class _Ack:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return None


class _Recording(EnvelopeProducer):
    """Keeps every send in order; the send numbered `refuse` is not acknowledged."""

    def __init__(self, refuse: int | None = None) -> None:
        super().__init__("unused:9092")
        self.sent: list[tuple[str, int | None, events_pb2.EventEnvelope]] = []
        self.refuse = refuse
        self.flushes = 0

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> _Ack:
        self.sent.append((topic, partition, events_pb2.EventEnvelope.FromString(value)))
        refused = self.refuse is not None and len(self.sent) == self.refuse
        return _Ack(RuntimeError("not acknowledged") if refused else None)

    def partitions_for(self, topic: str) -> list[int]:
        return PARTITIONS

    def flush(self, timeout: float = 30.0) -> None:
        self.flushes += 1


def _receive_many(app: RetailApp, count: int, first: int = 0) -> int:
    for n in range(first, first + count):
        app.receive_stock("TINA-30", "STORE-1", 1, f"DN-{n}")
    return app.recorder.max_notification_id() or 0


def test_one_call_relays_several_batches_in_order_then_marks_every_partition_once(
    app: RetailApp,
) -> None:
    head = _receive_many(app, 12)
    producer = _Recording()
    relay = OutboxRelay(app, producer, batch_size=4, max_batches=3)
    assert relay.run_once() == 12
    events = [e for _, _, e in producer.sent if not e.HasField("position_marker")]
    markers = [(t, p, e) for t, p, e in producer.sent if e.HasField("position_marker")]
    assert [e.position for e in events] == list(range(1, 13))
    # The markers come after every event of the call, one per partition of every topic.
    assert all(not e.HasField("position_marker") for _, _, e in producer.sent[:12])
    assert sorted((t, p) for t, p, _ in markers) == sorted(
        (t, p) for t in EVENT_TOPICS for p in PARTITIONS
    )
    assert {e.position for _, _, e in markers} == {12}
    assert relay.position == 12 == relay.tracking.max_tracking_id(TRACKING_NAME)
    assert relay.published == 12

    assert relay.run_once() == head - 12
    assert relay.position == head
    assert relay.run_once() == 0


def test_a_batch_is_recorded_only_once_the_broker_acknowledged_all_of_it(
    app: RetailApp,
) -> None:
    _receive_many(app, 5)
    # The third send, the second batch's first, is not acknowledged: the first batch is
    # recorded (its sends were), the second is not, whatever was sent after it.
    relay = OutboxRelay(app, _Recording(refuse=3), batch_size=2, max_batches=10)
    with pytest.raises(RuntimeError, match="not acknowledged"):
        relay.run_once()
    assert relay.position == 2 == relay.tracking.max_tracking_id(TRACKING_NAME)
    assert relay.published == 2
    # The next attempt (a fresh producer, as `run` makes one) sends from there again.
    relay.producer = again = _Recording()
    head = app.recorder.max_notification_id() or 0
    assert relay.run_once() == head - 2
    assert relay.position == head
    assert [e.position for _, _, e in again.sent if e.stream_id][:3] == [3, 4, 5]


def test_after_a_call_the_relay_waits_for_a_set_of_markers_worth_of_events_or_its_linger(
    app: RetailApp,
) -> None:
    _receive_many(app, 3)
    relay = OutboxRelay(app, _Recording())
    relay.run_once()  # 3 events, then 8 markers: 4 topics of 2 partitions
    stop = threading.Event()
    # Nothing new: it waits its whole linger, no longer.
    started = time.monotonic()
    assert relay._gather(stop, 0.05, 0.3) is False
    assert 0.3 <= time.monotonic() - started < 10
    # Fewer events than markers wait: still the whole linger.
    _receive_many(app, 4, first=3)
    started = time.monotonic()
    assert relay._gather(stop, 0.0, 0.3) is False
    assert time.monotonic() - started >= 0.3
    # Events that come while it waits end the wait once there are as many as markers.
    later = threading.Timer(0.2, _receive_many, (app, 4, 7))
    later.start()
    started = time.monotonic()
    try:
        assert relay._gather(stop, 0.0, 30.0) is True
    finally:
        later.join()
    assert 0.2 <= time.monotonic() - started < 10
    # With a set's worth waiting, only the shortest wait is kept; a stop ends any wait.
    started = time.monotonic()
    assert relay._gather(stop, 0.05, 30.0) is True
    assert 0.05 <= time.monotonic() - started < 10
    relay.run_once()
    stopping = threading.Timer(0.1, stop.set)
    stopping.start()
    started = time.monotonic()
    try:
        assert relay._gather(stop, 0.0, 30.0) is False
    finally:
        stopping.join()
    assert time.monotonic() - started < 10


def test_before_its_first_markers_the_relay_keeps_only_the_shortest_wait(app: RetailApp) -> None:
    relay = OutboxRelay(app, _Recording())
    started = time.monotonic()
    assert relay._gather(threading.Event(), 0.05, 30.0) is True
    assert time.monotonic() - started < 10

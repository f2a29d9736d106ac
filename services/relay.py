"""The outbox relay: the event store's notification log, in order, into Kafka.

At-least-once: a batch is sent, every send is acknowledged by the broker, and only then is the
relay's position recorded (in the event store's own database, with the library's tracking
recorder). A crash between the two re-sends the batch; readers drop what they already applied.
"""

from __future__ import annotations

import logging
import threading
import time
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking

from domain.catalog import Location
from protos.retail.v1 import events_pb2
from services.bus import EVENT_TOPICS, EnvelopeProducer, SendResult
from services.envelopes import LocationFacts, to_outgoing

log = logging.getLogger(__name__)

TRACKING_NAME = "kafka-relay"


class OutboxRelay:
    """Publishes the notifications of one write-side application to Kafka."""

    def __init__(
        self,
        app: Application[UUID],
        producer: EnvelopeProducer,
        batch_size: int = 1000,
        wake: threading.Event | None = None,
        topic_namespace: str = "",
    ) -> None:
        self.app = app
        self.topic_namespace = topic_namespace
        self.producer = producer
        self.batch_size = batch_size
        self.wake = wake or threading.Event()
        self.tracking = app.factory.tracking_recorder()
        self._locations: dict[str, LocationFacts] = {}
        self._partitions: dict[str, list[int]] = {}
        self.published = 0
        # One relay per application, so the stored position is read once and then kept here.
        self.position = self.tracking.max_tracking_id(TRACKING_NAME) or 0

    def _location(self, code: str) -> LocationFacts | None:
        facts = self._locations.get(code)
        if facts is None:
            try:
                location: object = self.app.repository.get(Location.create_id(code))
            except Exception:
                return None
            if not isinstance(location, Location):
                return None
            facts = LocationFacts(location.kind, location.district)
            self._locations[code] = facts
        return facts

    def run_once(self) -> int:
        """Publishes the next batch; answers how many notifications it covered."""
        start = self.position
        notifications = self.app.recorder.select_notifications(
            start=start, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        pending: list[SendResult] = []
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            outgoing = to_outgoing(event, notification.id, self.app.name, self._location)
            if outgoing is None:
                continue
            value = outgoing.envelope.SerializeToString()
            topic = self.topic_namespace + outgoing.topic
            pending.append(self.producer.send(topic, outgoing.key, value))
        events = len(pending)
        pending.extend(self._send_markers(notifications[-1].id))
        self.producer.flush()
        for result in pending:
            result.get(timeout=30)  # raises if the broker did not acknowledge
        last = notifications[-1].id
        self.tracking.insert_tracking(Tracking(TRACKING_NAME, last))
        self.position = last
        self.published += events
        return len(notifications)

    def _send_markers(self, position: int) -> list[SendResult]:
        """Marks every partition: all events up to `position` have been sent before this."""
        marker = events_pb2.EventEnvelope(
            event_type="retail.PositionMarker", position=position, application=self.app.name,
            position_marker=events_pb2.PositionMarker(),
        ).SerializeToString()  # fmt: skip
        sent: list[SendResult] = []
        for logical in EVENT_TOPICS:
            topic = self.topic_namespace + logical
            partitions = self._partitions.get(topic)
            if not partitions:
                partitions = self._partitions[topic] = self.producer.partitions_for(topic)
            sent.extend(self.producer.send(topic, None, marker, partition=p) for p in partitions)
        return sent

    def run(self, stop: threading.Event, idle_wait: float = 0.05) -> None:
        """Relays until `stop` is set; failures are logged and retried with a backoff."""
        backoff = 0.1
        while not stop.is_set():
            try:
                self.wake.clear()
                if self.run_once() == 0:
                    self.wake.wait(idle_wait)
                backoff = 0.1
            except Exception:
                log.exception("relay batch failed; retrying from position %s", self.position)
                self.producer.close()  # a fresh producer after a failure resends in order
                self._partitions.clear()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.producer.flush()


def run_in_thread(relay: OutboxRelay, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=relay.run, args=(stop,), name="outbox-relay", daemon=True)
    thread.start()
    return thread


def wait_until_published(relay: OutboxRelay, position: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while relay.position < position:
        if time.monotonic() > deadline:
            raise TimeoutError(f"relay at {relay.position}, wanted {position}")
        time.sleep(0.02)

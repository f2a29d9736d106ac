"""The outbox relay: the event store's notification log, in order, into Kafka.

At-least-once: a batch is sent, every send is acknowledged by the broker, and only then is the
relay's position recorded (in the event store's own database, with the library's tracking
recorder). A crash between the two re-sends the batch; readers drop what they already applied.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Notification, Tracking

from domain.catalog import Location
from protos.retail.v1 import events_pb2
from services.bus import EVENT_TOPICS, EnvelopeProducer, SendRecord, SendResult
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
        max_batches: int = 10,
        wake: threading.Event | None = None,
        topic_namespace: str = "",
    ) -> None:
        self.app = app
        self.topic_namespace = topic_namespace
        self.producer = producer
        self.batch_size = batch_size
        self.max_batches = max_batches
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
        """Publishes what is new, up to `max_batches` batches; answers how many notifications
        it covered. Each batch is read, mapped and sent while the one before waits for its
        acknowledgements; a batch's position is recorded once every send of it is
        acknowledged. On return all of them are."""
        covered = 0
        cursor = self.position
        waiting: list[SendResult] = []  # the sends of the batch up to `cursor`
        events = 0
        for _ in range(self.max_batches):
            notifications = self.app.recorder.select_notifications(
                start=cursor, limit=self.batch_size, inclusive_of_start=False
            )
            if not notifications:
                break
            records = self._records(notifications)
            sent = self.producer.send_all(records)
            if cursor > self.position:
                _acknowledged(waiting)
                self._record(cursor, events)
            waiting, cursor, events = sent, notifications[-1].id, len(records)
            covered += len(notifications)
            if len(notifications) < self.batch_size:
                break  # caught up: no need to ask again
        if not covered:
            return 0
        # Marked once per call, after its last batch: each marker says that every event up
        # to its position was sent before it, on its partition.
        waiting.extend(self._send_markers(cursor))
        self.producer.flush()
        _acknowledged(waiting)
        self._record(cursor, events)
        return covered

    def _record(self, position: int, events: int) -> None:
        self.tracking.insert_tracking(Tracking(TRACKING_NAME, position))
        self.position = position
        self.published += events

    def _records(self, notifications: Sequence[Notification]) -> list[tuple[str, bytes, bytes]]:
        """(topic, key, serialised envelope) of each notification that goes to Kafka."""
        events, name = self.app.mapper, self.app.name
        namespace, lookup = self.topic_namespace, self._location
        records = []
        for notification in notifications:
            outgoing = to_outgoing(notification, events, name, lookup)
            if outgoing is not None:
                records.append(
                    (namespace + outgoing.topic, outgoing.key,
                     outgoing.envelope.SerializeToString())
                )  # fmt: skip
        return records

    def _send_markers(self, position: int) -> list[SendResult]:
        """Marks every partition: all events up to `position` have been sent before this."""
        marker = events_pb2.EventEnvelope(
            event_type="retail.PositionMarker", position=position, application=self.app.name,
            position_marker=events_pb2.PositionMarker(),
        ).SerializeToString()  # fmt: skip
        markers: list[SendRecord] = []
        for logical in EVENT_TOPICS:
            topic = self.topic_namespace + logical
            partitions = self._partitions.get(topic)
            if not partitions:
                partitions = self._partitions[topic] = self.producer.partitions_for(topic)
            markers.extend((topic, None, marker, p) for p in partitions)
        return self.producer.send_all(markers)

    def run(
        self,
        stop: threading.Event,
        idle_wait: float = 0.05,
        gather: float = 0.02,
        linger: float = 0.1,
    ) -> None:
        """Relays until `stop` is set; failures are logged and retried with a backoff.

        While writes keep coming, each call waits `gather` seconds after the one before, so
        a call carries a burst's worth of events and one set of markers (one per partition),
        not a set per commit: during a flash sale (a commit every few ms) the markers, their
        acknowledgements and the projector's commits for them took 0.4 cores of the relay and
        projector's process and 0.4 of the broker's. Projection lag grows by up to `gather`:
        at half of the POS scenario's maximum (340-430 sales/s), 20 ms instead of 50 ms took
        the lag's p50 from 141-158 ms to 102-126 ms (three runs each).

        Then, while fewer events wait than a call sends markers, it waits on, `linger`
        seconds after the last call at most (`_gather`): a set of markers goes out for at
        least as many events as it has markers, or at least `linger` apart."""
        backoff = 0.1
        while not stop.is_set():
            try:
                self.wake.clear()
                covered = self.run_once()
                if covered == 0:
                    self.wake.wait(idle_wait)
                elif covered < self.batch_size * self.max_batches:
                    self._gather(stop, gather, linger)  # caught up: let the next burst gather
                backoff = 0.1
            except Exception:
                log.exception("relay batch failed; retrying from position %s", self.position)
                self.producer.close()  # a fresh producer after a failure resends in order
                self._partitions.clear()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.producer.flush()

    def _gather(self, stop: threading.Event, least: float, most: float, poll: float = 0.01) -> bool:
        """Waits `least` seconds, then until as many stored events wait to be relayed as a
        call sends markers, `most` seconds in all at most; answers whether that many came.

        The cost of a call is mostly its own, not its events': with six partitions a topic a
        call sends 24 markers, which the broker stores and the projector reads and records a
        position for. In a flash sale's trickle of events (measured, 2026-12-02: 100 commits
        a second, 15 orders each, 200 events a second, beside the broker alone) the relay
        made 24-26 calls a second with 20 ms between them, the relay and projector's process
        used 0.45-0.46 cores and the broker 0.32-0.39; waiting for a set of markers' worth
        of events, 8.2-8.3 calls, 0.25 and 0.23 cores. At half of the POS scenario's
        maximum rate (1,200 events a second) the events come within `least` and nothing
        changes; below that, the projection lag grows by up to `most` - `least`."""
        stop.wait(least)
        wanted = sum(len(partitions) for partitions in self._partitions.values())
        deadline = time.monotonic() + most - least
        while not stop.is_set():
            if (self.app.recorder.max_notification_id() or 0) - self.position >= wanted:
                return True
            if time.monotonic() >= deadline:
                return False
            stop.wait(poll)
        return False


def _acknowledged(results: list[SendResult]) -> None:
    for result in results:
        result.get(timeout=30)  # raises if the broker did not acknowledge


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

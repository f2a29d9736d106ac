"""Real role processes on the real broker, a shop writing to the event store in the test
process, and the check that the SQL views equal the event store, unit for unit."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import select

from domain.errors import InsufficientStockError
from domain.values import AdjustmentReason, LocationKind, Money
from projections.db import make_engine
from projections.models import AppliedStream, ConsumerOffset, SaleView, StockView, StreamGap
from protos.retail.v1 import events_pb2
from services.application import RetailApp, SaleLineInput
from services.bus import ensure_topics, topic_names
from services.config import Settings
from services.localkafka import LocalKafka
from services.localkafka.broker import REPO_ROOT, free_port
from services.relay import TRACKING_NAME

READY = "retail backend up"  # what `run` prints once its roles started
FIGURES = ("on_hand", "reserved", "safety_stock", "unavailable", "incoming", "allocated")
SKUS = ("FT-TINA-30", "FT-MILO-30", "FT-PIN-01", "FT-GLASS-01")
STORES = ("STORE-FT-01", "STORE-FT-02", "STORE-FT-03")
# The caller's RETAIL_* variables are dropped (the test decides every setting) except this.
OWN_VARIABLES = frozenset({"RETAIL_CACHE_DIR"})

Figures = dict[str, int]
Partition = tuple[str, int]


class RoleProcess:
    """One `python -m services.cli run --roles <role>` process, its output in its own log."""

    def __init__(self, role: str, env: dict[str, str], log: Path) -> None:
        self.role = role
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "run", "--roles", role],
                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self, tail: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.log.name} (pid {self.process.pid}) ---\n{text[-tail:]}"

    def wait_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while READY not in self.log.read_text(errors="replace"):
            if not self.alive():
                raise AssertionError(f"{self.role} exited with {self.process.returncode}\n"
                                     + self.output())  # fmt: skip
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.role} did not start in {timeout} s\n" + self.output())
            time.sleep(0.05)

    def lines(self, *needles: str) -> list[str]:
        """The lines of its log holding any of `needles`."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if any(n in line for n in needles)]

    def kill9(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, closed or committed."""
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, the way an orchestrator stops a container; SIGKILL if that hangs."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


class Deployment:
    """The write side in this process; relay and projector as separate processes on demand."""

    def __init__(self, root: Path, bootstrap: str, namespace: str) -> None:
        self.root = root
        self.bootstrap = bootstrap
        self.settings = Settings(
            data_dir=root / "data", kafka_bootstrap=bootstrap, topic_partitions=3,
            topic_namespace=namespace, consumer_group=f"{namespace}views", seed_demo=False,
        )  # fmt: skip
        self.settings.data_dir.mkdir(parents=True)
        self.topics = topic_names(namespace)
        ensure_topics(bootstrap, self.settings.topic_partitions, self.topics)
        self.processes: list[RoleProcess] = []
        self.app = RetailApp(env=self.settings.event_store_env())
        self.tracking = self.app.factory.tracking_recorder()
        # The projector creates the tables; this engine only reads (after it is up).
        self.views = make_engine(self.settings.views_database_url, create=False)
        self._kafka: Any = None
        self._partitions: list[TopicPartition] = []

    def env(self) -> dict[str, str]:
        inherited = {
            name: value for name, value in os.environ.items()
            if not name.startswith("RETAIL_") or name in OWN_VARIABLES
        }  # fmt: skip
        s = self.settings
        return {
            **inherited,
            "PYTHONUNBUFFERED": "1",
            "RETAIL_DATA_DIR": str(s.data_dir),
            "RETAIL_KAFKA_BOOTSTRAP": self.bootstrap,
            "RETAIL_TOPIC_NAMESPACE": s.topic_namespace,
            "RETAIL_CONSUMER_GROUP": s.consumer_group,
            "RETAIL_TOPIC_PARTITIONS": str(s.topic_partitions),
            "RETAIL_SEED_DEMO": "0",
        }

    def start(self, role: str) -> RoleProcess:
        number = sum(1 for p in self.processes if p.role == role) + 1
        process = RoleProcess(role, self.env(), self.root / f"{role}-{number}.log")
        self.processes.append(process)
        return process

    def close(self) -> None:
        """Stops every process started here (also after a failure), then the clients."""
        try:
            for process in self.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.stop()
        finally:
            if self._kafka is not None:
                self._kafka.close()
            self.app.close()
            self.views.dispose()

    def logs(self) -> str:
        return "\n".join(process.output() for process in self.processes)

    # The write side

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def relay_position(self) -> int:
        return self.tracking.max_tracking_id(TRACKING_NAME) or 0

    def forget_relay_position(self) -> None:
        """Deletes the relay's tracking row: its next run sends every event again."""
        path = self.settings.data_dir / "events.sqlite"
        with sqlite3.connect(path, timeout=30) as conn:
            conn.execute("DELETE FROM tracking WHERE application_name = ?", (TRACKING_NAME,))
        conn.close()

    # Kafka

    def _consumer(self) -> Any:
        """A reader of the namespace's topics outside any group, created on first use."""
        if self._kafka is None:
            self._kafka = KafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, client_id="fault-check"
            )
            deadline = time.monotonic() + 30
            for topic in self.topics:
                while not self._kafka.partitions_for_topic(topic):
                    assert time.monotonic() < deadline, f"Kafka does not know {topic}"
                    time.sleep(0.1)
                self._partitions += [
                    TopicPartition(topic, p) for p in self._kafka.partitions_for_topic(topic)
                ]
        return self._kafka

    def end_offsets(self) -> dict[Partition, int]:
        """How many records each partition of the namespace's topics holds."""
        answer = self._consumer().end_offsets(self._partitions)
        return {(tp.topic, tp.partition): int(offset) for tp, offset in answer.items()}

    def read_delivery(self, timeout: float = 30.0) -> Delivery:
        """Every record of the namespace's topics, from the start."""
        consumer = self._consumer()
        consumer.assign(self._partitions)
        consumer.seek_to_beginning(*self._partitions)
        ends = consumer.end_offsets(self._partitions)
        delivery = Delivery()
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in self._partitions):
            assert time.monotonic() < deadline, f"could not read the topics in {timeout} s"
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    delivery.add(record.value)
        return delivery

    # The views

    def view_stock(self) -> dict[tuple[str, str], Figures]:
        columns = [getattr(StockView, name) for name in (*FIGURES, "available")]
        with self.views.connect() as conn:
            rows = conn.execute(select(StockView.sku, StockView.location, *columns)).all()
        names = (*FIGURES, "available")
        return {(row[0], row[1]): dict(zip(names, row[2:], strict=True)) for row in rows}

    def view_sales(self) -> list[str]:
        with self.views.connect() as conn:
            return list(conn.execute(select(SaleView.sale_id)).scalars())

    def stored_offsets(self) -> dict[Partition, int]:
        group = self.settings.consumer_group
        with self.views.connect() as conn:
            rows = conn.execute(
                select(ConsumerOffset.topic, ConsumerOffset.partition, ConsumerOffset.next_offset)
                .where(ConsumerOffset.consumer_group == group)
            ).all()  # fmt: skip
        return {(topic, partition): offset for topic, partition, offset in rows}

    def gaps(self) -> list[tuple[Any, ...]]:
        with self.views.connect() as conn:
            return [tuple(row) for row in conn.execute(select(StreamGap)).all()]

    def applied_versions(self) -> dict[str, int]:
        """The last version the projector applied, per stream."""
        with self.views.connect() as conn:
            rows = conn.execute(select(AppliedStream.stream_id, AppliedStream.version)).all()
        return {stream: version for stream, version in rows}


@dataclass
class Delivery:
    """What Kafka holds: event records (redeliveries included) and each stream's last version.
    Records that are not events of a stream (such as position markers) are left out."""

    records: int = 0
    events: set[tuple[str, int]] = field(default_factory=set)
    last_versions: dict[str, int] = field(default_factory=dict)

    def add(self, value: bytes) -> None:
        try:
            envelope = events_pb2.EventEnvelope.FromString(value)
        except DecodeError:
            return
        stream, version = envelope.stream_id, envelope.stream_version
        if not stream:
            return
        self.records += 1
        self.events.add((stream, version))
        self.last_versions[stream] = max(self.last_versions.get(stream, 0), version)

    @property
    def redelivered(self) -> int:
        return self.records - len(self.events)


class Shop:
    """Receipts, till sales, safety stock and damage at a few stores, from a seeded random."""

    def __init__(self, app: RetailApp, seed: int) -> None:
        self.app = app
        self.rng = random.Random(seed)
        self.operations = 0
        self.sales: set[str] = set()
        for number, sku in enumerate(SKUS):
            app.register_sku(sku, f"Fault item {number}", "Fault", Money(1000 + number, "CNY"))
        for store in STORES:
            app.register_location(store, LocationKind.PARTNER_STORE, store, "Beijing", "Xicheng")

    def step(self) -> None:
        rng, app, n = self.rng, self.app, self.operations
        store, sku, roll = rng.choice(STORES), rng.choice(SKUS), rng.random()
        if roll < 0.45:
            app.receive_stock(sku, store, rng.randint(1, 12), f"DN-{n}")
        elif roll < 0.85:
            lines = [
                SaleLineInput(s, rng.randint(1, 3)) for s in rng.sample(SKUS, rng.randint(1, 2))
            ]
            receipt = app.record_sale(f"T-{store}", f"S-{n}", store, "staff-1", None, lines, [])
            self.sales.add(str(receipt.sale_id))
        elif roll < 0.95:
            app.set_safety_stock(sku, store, rng.randint(0, 4), f"SS-{n}")
        else:
            try:
                app.adjust_stock(sku, store, AdjustmentReason.DAMAGE, 1, f"DMG-{n}")
            except InsufficientStockError:
                app.adjust_stock(sku, store, AdjustmentReason.FOUND, 2, f"FND-{n}")
        self.operations += 1

    def run(self, count: int, until: Callable[[], bool] | None = None, every: int = 10) -> bool:
        """Up to `count` operations; stops early (answering True) once `until` holds."""
        for done in range(count):
            self.step()
            if until is not None and done % every == 0 and until():
                return True
        return False

    def expected_stock(self) -> dict[tuple[str, str], Figures]:
        """The write side's own levels of every SKU at every store it touched."""
        expected: dict[tuple[str, str], Figures] = {}
        for sku in SKUS:
            for store in STORES:
                item = self.app.get_stock_item(sku, store)
                if item is not None:
                    levels = item.levels
                    figures = {name: int(getattr(levels, name)) for name in FIGURES}
                    expected[(sku, store)] = {**figures, "available": levels.available}
        return expected


@dataclass
class Comparison:
    """The views against the event store and the broker, at one moment."""

    relay_behind: int = 0
    unconsumed: dict[Partition, tuple[int, int]] = field(default_factory=dict)
    stock_diff: list[str] = field(default_factory=list)
    missing_sales: set[str] = field(default_factory=set)
    extra_sales: list[str] = field(default_factory=list)

    @property
    def views_equal(self) -> bool:
        """The views show exactly what was written (whether or not all of it arrived yet)."""
        return not (self.stock_diff or self.missing_sales or self.extra_sales)

    @property
    def equal(self) -> bool:
        """Everything written was relayed and consumed, and the views show exactly that."""
        return self.views_equal and not (self.relay_behind or self.unconsumed)

    def report(self) -> str:
        lines = [
            f"relay behind the event store by {self.relay_behind} notifications",
            f"partitions not consumed to the end (stored, end): {self.unconsumed}",
            f"{len(self.stock_diff)} stock rows differ:", *self.stock_diff[:20],
            f"sales missing from sale_view: {sorted(self.missing_sales)[:10]}",
            f"sale_view rows not written or repeated: {self.extra_sales[:10]}",
        ]  # fmt: skip
        return "\n".join(lines)


def compare(deployment: Deployment, shop: Shop) -> Comparison:
    result = Comparison()
    head = deployment.head()
    result.relay_behind = head - deployment.relay_position()
    end = deployment.end_offsets()  # read after the relay's position: it tracks after the ack
    stored = deployment.stored_offsets()
    result.unconsumed = {
        tp: (stored.get(tp, 0), offset) for tp, offset in end.items() if stored.get(tp, 0) != offset
    }
    expected, actual = shop.expected_stock(), deployment.view_stock()
    for key in sorted(expected.keys() | actual.keys()):
        if expected.get(key) != actual.get(key):
            result.stock_diff.append(
                f"  {key[0]}@{key[1]}: event store {expected.get(key)}, view {actual.get(key)}"
            )
    sales = deployment.view_sales()
    result.missing_sales = shop.sales - set(sales)
    seen: set[str] = set()
    for sale in sales:
        if sale not in shop.sales or sale in seen:
            result.extra_sales.append(sale)
        seen.add(sale)
    return result


def wait_until_equal(
    deployment: Deployment, shop: Shop, live: list[RoleProcess], timeout: float = 60.0
) -> Comparison:
    """Polls until the views caught up with everything written, or the time is up; answers the
    last comparison. Fails at once if a role process that should be running died."""
    deadline = time.monotonic() + timeout
    while True:
        for process in live:
            assert process.alive(), f"{process.role} died\n{process.output()}"
        comparison = compare(deployment, shop)
        if comparison.equal or time.monotonic() > deadline:
            return comparison
        time.sleep(0.25)


def watch_until_equal(
    deployment: Deployment, shop: Shop, live: list[RoleProcess], timeout: float = 60.0
) -> tuple[Comparison, int, list[Comparison]]:
    """For when nothing is written: compares every 20 ms until everything was consumed.
    Answers the last comparison, how many were taken and those whose views differed."""
    deadline = time.monotonic() + timeout
    snapshots, differing = 0, []
    while True:
        for process in live:
            assert process.alive(), f"{process.role} died\n{process.output()}"
        comparison = compare(deployment, shop)
        snapshots += 1
        if not comparison.views_equal:
            differing.append(comparison)
        if comparison.equal or time.monotonic() > deadline:
            return comparison, snapshots, differing
        time.sleep(0.02)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.005)


def assert_views_equal(deployment: Deployment, comparison: Comparison, shop: Shop) -> Delivery:
    """The views equal the event store; answers what Kafka delivered, read from the start."""
    assert comparison.equal, comparison.report() + "\n" + deployment.logs()
    assert deployment.gaps() == []
    assert len(deployment.view_sales()) == len(shop.sales)
    # Each stream was applied up to its last version in Kafka: every event once, and every
    # redelivered one recognised and dropped.
    delivery = deployment.read_delivery()
    applied = deployment.applied_versions()
    behind = {
        stream: (applied.get(stream), version)
        for stream, version in delivery.last_versions.items()
        if applied.get(stream) != version
    }
    assert not behind, f"streams (applied, in Kafka): {dict(list(behind.items())[:10])}"
    assert applied.keys() == delivery.last_versions.keys()
    print(
        f"{shop.operations} operations, {deployment.head()} notifications, "
        f"{len(delivery.events)} events in Kafka, {delivery.redelivered} of them delivered again"
    )
    return delivery


class RestartableBroker:
    """A broker of one test's own, on two free ports of 127.0.0.1 and a data dir that outlives
    it: every start is a new LocalKafka on the same ports and data dir, so the topics, their
    records and the consumer groups' state survive a stop or a kill."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.broker: LocalKafka | None = None
        self.starts = 0
        self.started_at = 0.0  # time.monotonic() when it last answered

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.broker is not None

    def start(self, timeout: float = 60.0) -> None:
        """Must be called from the thread that lives as long as the broker: the broker gets the
        parent-death signal when the thread that started it ends."""
        assert self.broker is None, "the broker runs already"
        broker = LocalKafka(self.data_dir, port=self.port, controller_port=self.controller_port)
        broker.start(timeout)  # stops what it started if it fails
        self.broker = broker
        self.starts += 1
        self.started_at = time.monotonic()

    def stop(self) -> None:
        """A controlled shutdown (SIGTERM, SIGKILL after 30 s)."""
        broker, self.broker = self.broker, None
        if broker is not None:
            broker.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash of the broker's machine would (but the page cache survives)."""
        broker, self.broker = self.broker, None
        if broker is not None:
            broker.kill()

    def log_tail(self, lines: int = 20) -> str:
        log = self.data_dir / "logs" / "server.log"
        text = log.read_text(errors="replace").splitlines() if log.exists() else []
        return "\n".join(text[-lines:])


class SteadyWriter:
    """Writes the shop's operations at a steady pace in a thread of its own, so the test's own
    thread can stop and start the broker meanwhile. Nothing else may use the shop until the
    writer stopped (leaving the `with` block stops it); the event store may be read."""

    def __init__(self, shop: Shop, per_second: float, limit: int = 20_000) -> None:
        self.shop = shop
        self.per_second = per_second
        self.limit = limit
        self.written = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-writer", daemon=True)

    def __enter__(self) -> SteadyWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        began = time.monotonic()
        try:
            while not self._stop.is_set() and self.written < self.limit:
                if self.written < (time.monotonic() - began) * self.per_second:
                    self.shop.step()
                    self.written += 1
                else:
                    self._stop.wait(0.005)
        except BaseException as error:
            self.error = error

    def check(self) -> None:
        """Raises what stopped the writer, if anything did."""
        if self.error is not None:
            raise AssertionError(f"the shop failed to write: {self.error!r}") from self.error

    def write_for(self, seconds: float) -> int:
        """Lets it write for `seconds`; answers how many operations it wrote meanwhile."""
        before = self.written
        self._stop.wait(seconds)
        self.check()
        return self.written - before

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the shop's writer did not stop"
        self.check()
        return self.written

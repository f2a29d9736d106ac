"""The composition root: wires the broker, write side, relay, projector and gRPC server."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from types import TracebackType
from typing import Any

from prometheus_client import start_http_server
from sqlalchemy import Engine

from projections.db import make_engine
from projections.projector import Projector
from projections.projector import run_in_thread as run_projector
from projections.queries import ProgressQueries, StockQueries
from services import affinity
from services.application import RetailApp
from services.bus import (
    DEAD_LETTER_TOPIC,
    EnvelopeProducer,
    KafkaDeadLetters,
    ensure_topics,
    new_consumer,
    topic_names,
)
from services.config import Settings
from services.flash import FlashSales
from services.localkafka import LocalKafka
from services.localkafka.broker import die_with_parent, stop_child
from services.relay import OutboxRelay
from services.relay import run_in_thread as run_relay
from services.rpc.server import Api, create_server
from services.seed import seed_demo
from services.tills import TillDesk

log = logging.getLogger(__name__)


class Backend:
    """Everything one process runs, by role: api, relay, projector (all three by default)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.broker: LocalKafka | None = None
        self.app: RetailApp | None = None
        self.engine: Engine | None = None
        self.relay: OutboxRelay | None = None
        self.projector: Projector | None = None
        self.api: Api | None = None
        self.flash: FlashSales | None = None
        self.tills: TillDesk | None = None
        self._dead_letter_producer: EnvelopeProducer | None = None
        self._metrics_server: Any = None
        self._threads: list[threading.Thread] = []
        self.pipeline: PipelineProcess | None = None

    @property
    def grpc_port(self) -> int:
        assert self.api is not None
        return self.api.port

    def start(self) -> Backend:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if not s.kafka_bootstrap:
            self.broker = LocalKafka(
                s.data_dir / "kafka", port=s.kafka_port, controller_port=s.kafka_controller_port
            ).start()
        bootstrap = s.kafka_bootstrap_servers
        topics = topic_names(s.topic_namespace)
        dead_letter_topic = s.topic_namespace + DEAD_LETTER_TOPIC
        ensure_topics(bootstrap, s.topic_partitions, [*topics, dead_letter_topic])
        self.app = RetailApp(env=s.event_store_env())
        apart = bool(s.pipeline_process and "api" in s.roles and s.roles & {"relay", "projector"})
        allowed = affinity.allowed_cores()
        cores = self._api_cores(s, allowed, apart)
        child = affinity.pipeline_cores(allowed, cores) if apart else None
        if apart:
            if s.seed_demo:
                seed_demo(self.app)  # before the child reads the store
            self.pipeline = PipelineProcess(s, bootstrap, child).start()
            s = s.with_changes(roles=frozenset({"api"}), seed_demo=False)
        if cores is not None:  # before the API's threads start: they inherit it
            affinity.keep_threads_on(cores)
            beside = f", the relay/projector process on {affinity.listed(child)}" if child else ""
            log.info(
                "API threads kept on core %s%s (RETAIL_API_CPUS=%s; off leaves them be)",
                affinity.listed(cores), beside, s.api_cpus,
            )  # fmt: skip
        if s.seed_demo and "api" in s.roles:
            seed_demo(self.app)
        if "relay" in s.roles:
            self.relay = OutboxRelay(
                self.app,
                EnvelopeProducer(bootstrap),
                wake=self.app.new_events,
                topic_namespace=s.topic_namespace,
            )
            self._threads.append(run_relay(self.relay, self.stop_event))
        if "projector" in s.roles or "api" in s.roles:
            self.engine = make_engine(s.views_database_url)
        if "projector" in s.roles:
            assert self.engine is not None
            consumer = new_consumer(bootstrap, s.consumer_group, client_id="retail-projector")
            self._dead_letter_producer = EnvelopeProducer(
                bootstrap, client_id="retail-dead-letters"
            )
            dead_letters = KafkaDeadLetters(self._dead_letter_producer, dead_letter_topic)
            self.projector = Projector(self.engine, consumer, s.consumer_group, dead_letters)
            self.projector.subscribe(topics)
            self._threads.append(run_projector(self.projector, self.stop_event))
        if s.metrics_address:
            self._serve_metrics(s.metrics_address)
        if "api" in s.roles:
            assert self.engine is not None
            self.flash = FlashSales(self.app)
            self.tills = TillDesk(self.app)
            self._threads.append(_start_sweeper(self.app, self.stop_event))
            progress = ProgressQueries(self.engine, s.consumer_group)
            self.api = create_server(
                s.grpc_address, self.app, StockQueries(self.engine), progress, self.flash,
                self.tills, workers=s.grpc_workers, event_loop=s.event_loop,
            )  # fmt: skip
            log.info(
                "serving retail.v1 gRPC on %s",
                s.grpc_address.rsplit(":", 1)[0] + f":{self.api.port}",
            )

    @staticmethod
    def _api_cores(s: Settings, allowed: frozenset[int], apart: bool) -> frozenset[int] | None:
        """The cores RETAIL_API_CPUS gives the API's threads (services.affinity); None: none
        chosen, or this process runs no API."""
        if "api" not in s.roles or not affinity.supported():
            return None
        return affinity.api_cores(s.api_cpus, allowed, os.getpid(), apart)

    def _serve_metrics(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        try:
            server, _thread = start_http_server(int(port), addr=host or "127.0.0.1")
        except OSError as error:
            log.warning("metrics not served on %s: %s", address, error)
            return
        self._metrics_server = server
        log.info("Prometheus metrics on http://%s/metrics", address)

    def stop(self) -> None:
        """Stops in reverse order; safe to call twice and after a failed start."""
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server = None
        if self.api is not None:
            self.api.stop()
            self.api = None
        if self.flash is not None:
            self.flash.stop()
            self.flash = None
        if self.tills is not None:
            self.tills.stop()
            self.tills = None
        if self.pipeline is not None:  # after the API: the relay publishes the last writes
            self.pipeline.stop()
            self.pipeline = None
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._threads.clear()
        if self.projector is not None:
            with contextlib.suppress(Exception):
                self.projector.close()
            self.projector = None
        if self.relay is not None:
            with contextlib.suppress(Exception):
                self.relay.producer.close()
            self.relay = None
        if self._dead_letter_producer is not None:
            with contextlib.suppress(Exception):
                self._dead_letter_producer.close()
            self._dead_letter_producer = None
        if self.app is not None:
            self.app.close()
            self.app = None
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> Backend:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class PipelineProcess:
    """The relay and projector roles in a child process (`services.cli run` with
    RETAIL_ROLES=relay,projector), for a backend started with every role: each Python process
    has one GIL, and the API's event loop keeps its own. Measured with the flash sale, roles
    in one process: 949 confirmed/s; api alone: 1,971 (see docs/benchmarks.md). The child dies
    with us (PR_SET_PDEATHSIG), is stopped after the API (so the relay sends the last
    writes) and started again if it exits on its own."""

    def __init__(
        self, settings: Settings, bootstrap: str, cores: frozenset[int] | None = None
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.process: subprocess.Popen[bytes] | None = None
        # The cores the child runs on (services.affinity.pipeline_cores), set in the child
        # itself: one started again after the API's threads were kept on theirs would
        # inherit those otherwise. None: the cores this process may use now.
        if cores is None and affinity.supported():
            cores = affinity.allowed_cores()
        self.cores = cores

    def _env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(
            RETAIL_ROLES=",".join(sorted(s.roles & {"relay", "projector"})),
            RETAIL_KAFKA_BOOTSTRAP=self.bootstrap,
            RETAIL_DATA_DIR=str(s.data_dir.resolve()),
            RETAIL_PIPELINE_PROCESS="0",
            RETAIL_SEED_DEMO="0",
            RETAIL_TOPIC_NAMESPACE=s.topic_namespace,
            RETAIL_CONSUMER_GROUP=s.consumer_group,
            RETAIL_VIEWS_URL=s.views_url,
            RETAIL_EVENT_STORE=s.event_store,
            RETAIL_POSTGRES_DSN=s.postgres_dsn,
        )
        host, _, port = s.metrics_address.rpartition(":")
        # The projector's gauges are served by the child, on the next port.
        env["RETAIL_METRICS_ADDRESS"] = f"{host}:{int(port) + 1}" if port.isdigit() else ""
        return env

    def start(self) -> PipelineProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run"],
            env=self._env(),
            preexec_fn=self._in_child,  # noqa: PLW1509 - two system calls, no Python state
        )
        log.info("relay and projector in process %d", self.process.pid)
        return self

    def _in_child(self) -> None:
        """Runs in the child before it starts: it dies with us (PR_SET_PDEATHSIG) and runs on
        its cores."""
        die_with_parent()
        if self.cores is not None:
            os.sched_setaffinity(0, self.cores)

    def check(self) -> None:
        """Starts the child again if it exited (its work resumes from what it recorded)."""
        if self.process is not None and self.process.poll() is not None:
            log.error("the relay/projector process exited with %s; starting it again",
                      self.process.returncode)  # fmt: skip
            self.start()

    def stop(self, grace: float = 20.0) -> None:
        process, self.process = self.process, None
        stop_child(process, grace, "the relay/projector process")


def _start_sweeper(app: RetailApp, stop: threading.Event, every: float = 0.5) -> threading.Thread:
    """Releases expired reservation holds even when nobody asks about them."""

    def sweep() -> None:
        while not stop.wait(every):
            try:
                released = app.expire_due()
                if released:
                    log.info("released %d expired reservation holds", released)
            except Exception:
                log.exception("reservation sweep failed; trying again")

    thread = threading.Thread(target=sweep, name="reservation-sweeper", daemon=True)
    thread.start()
    return thread

"""Fetches the broker's jars once, then formats, starts, waits for and stops a KRaft broker."""

from __future__ import annotations

import base64
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("pom.xml")
REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_VERSION = "4.4.0"
MIN_JAVA = 17
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class BrokerError(RuntimeError):
    """The local broker cannot be fetched, started or reached; the message says what to do."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("RETAIL_CACHE_DIR", REPO_ROOT / ".cache"))


def _java_major(java: str) -> int:
    out = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=30, check=False
    ).stderr
    # First line: openjdk version "17.0.15" 2025-04-15 (or "1.8.0_..." for old ones).
    for raw in out.split():
        token = raw.strip('"')
        if token[:1].isdigit():
            parts = token.split(".")
            return int(parts[1]) if parts[0] == "1" else int(parts[0].split("-")[0])
    raise BrokerError(f"cannot tell the Java version from: {out.strip()!r}")


def find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise BrokerError(
            f"Java {MIN_JAVA}+ is needed to run the local Kafka broker and was not found: "
            "install a JDK (for example `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
        )
    major = _java_major(java)
    if major < MIN_JAVA:
        raise BrokerError(
            f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+, found Java {major} at {java}"
        )
    return java


def ensure_jars(cache_dir: Path | None = None) -> Path:
    """The folder of broker jars, fetched from Maven Central into the cache on first use."""
    target = (cache_dir or default_cache_dir()).resolve() / f"kafka-{KAFKA_VERSION}" / "jars"
    marker = target / ".complete"
    if marker.exists():
        return target
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError(
            "Maven is needed once to fetch the Kafka broker jars and was not found: install it "
            "(for example `apt-get install maven`), or copy the jars into " + str(target)
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="jars-", dir=target.parent))
    log.info("fetching Kafka %s jars into %s (once)", KAFKA_VERSION, target)
    result = subprocess.run(
        [
            mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
        ],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(
            "Maven could not fetch the Kafka jars:\n" + (result.stdout + result.stderr)[-3000:]
        )
    (staging / ".complete").write_text(KAFKA_VERSION + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_child(process: subprocess.Popen[bytes] | None, grace: float, name: str) -> None:
    """SIGTERM, then SIGKILL if `process` has not exited within `grace` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0fs; killing it", name, grace)
        process.kill()
        process.wait(10)


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM to the broker if we die."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # A new process group: a Ctrl-C aimed at the terminal's group reaches us, and we stop the
    # broker in order, instead of the JVM racing us to exit.
    os.setpgid(0, 0)


class LocalKafka:
    """One KRaft broker+controller on loopback with its data in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 19092,
        controller_port: int = 19093,
        jars_dir: Path | None = None,
        heap: str = "768m",
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.controller_port = controller_port
        self.jars_dir = jars_dir
        self.heap = heap
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    def _write_config(self) -> Path:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "kraft").mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    "inter.broker.listener.name=PLAINTEXT",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.data_dir / 'kraft'}",
                    "num.partitions=6",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=6",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    # Events are the record of the business: never age them out.
                    "log.retention.ms=-1",
                    "auto.create.topics.enable=false",
                    "",
                ]
            )
        )
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(
            "\n".join(
                [
                    "appender.file.type=RollingFile",
                    "appender.file.name=file",
                    f"appender.file.fileName={self.log_file}",
                    f"appender.file.filePattern={logs / 'server.log.%i'}",
                    "appender.file.layout.type=PatternLayout",
                    "appender.file.layout.pattern=[%d] %p %m (%c)%n",
                    "appender.file.policies.type=Policies",
                    "appender.file.policies.size.type=SizeBasedTriggeringPolicy",
                    "appender.file.policies.size.size=20MB",
                    "appender.file.strategy.type=DefaultRolloverStrategy",
                    "appender.file.strategy.max=3",
                    "rootLogger.level=INFO",
                    "rootLogger.appenderRef.file.ref=file",
                    "",
                ]
            )
        )
        return props

    def start(self, timeout: float = 120.0) -> LocalKafka:
        java = find_java()
        jars = self.jars_dir or ensure_jars()
        for port in (self.port, self.controller_port):
            if _port_open(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use (another broker still running?): "
                    "stop it, or choose other ports with RETAIL_KAFKA_PORT and "
                    "RETAIL_KAFKA_CONTROLLER_PORT"
                )
        props = self._write_config()
        classpath = f"{jars}/*"
        if not (self.data_dir / "kraft" / "meta.properties").exists():
            # An id starting with "-" would be read as an option by the storage tool.
            cluster_id = "-"
            while cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            fmt = subprocess.run(
                [
                    java, "-cp", classpath, "kafka.tools.StorageTool", "format",
                    "-t", cluster_id, "-c", str(props), "--ignore-formatted",
                ],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            if fmt.returncode != 0:
                raise BrokerError(
                    f"formatting the Kafka data dir failed:\n{fmt.stdout}{fmt.stderr}"
                )
        console = (self.data_dir / "logs" / "console.log").open("ab")
        self.process = subprocess.Popen(
            [
                java, "-Xms256m", f"-Xmx{self.heap}", "-XX:+UseG1GC",
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "-cp", classpath, "kafka.Kafka", str(props),
            ],
            stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - needed for the parent-death signal
        )  # fmt: skip
        console.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("Kafka broker ready on %s (pid %s)", self.bootstrap, self.process.pid)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(
                    f"the Kafka broker exited with code {self.process.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            if _port_open(self.port) and self._cluster_answers():
                return
            time.sleep(0.25)
        raise BrokerError(
            f"the Kafka broker did not become ready within {timeout:.0f}s; "
            f"last lines of {self.log_file}:\n{self._log_tail()}"
        )

    def _cluster_answers(self) -> bool:
        from kafka import KafkaAdminClient  # noqa: PLC0415 - only needed once the port is open

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        except Exception:
            return False
        try:
            admin.describe_cluster()
            return True
        except Exception:
            return False
        finally:
            admin.close()

    def _log_tail(self, lines: int = 30) -> str:
        for candidate in (self.log_file, self.data_dir / "logs" / "console.log"):
            if candidate.exists():
                text = candidate.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    return "\n".join(text)
        return "(no log written)"

    def stop(self, grace: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), then SIGKILL if it does not exit within `grace`."""
        process, self.process = self.process, None
        stop_child(process, grace, "Kafka broker")

    def kill(self) -> None:
        """Stops the broker abruptly, as a crash would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def __enter__(self) -> LocalKafka:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

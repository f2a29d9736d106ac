"""The systems under test, started by the orchestrator: the local broker, the backend as the
real `python -m services.cli run` process, and the baselines' servers; plus the RSS sampler."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import psutil  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import Children, free_port
from services.localkafka import BrokerError, LocalKafka


def start_broker(data_dir: Path, attempts: int = 3) -> LocalKafka:
    """A broker of our own on free ports (it dies with us: parent-death signal).

    Tried again on a failure to start: LocalKafka passes its random cluster id as `-t ID`, and
    an id that starts with "-" (1 in 64) is taken for an option by the storage tool."""
    for attempt in range(1, attempts + 1):
        try:
            directory = (
                data_dir if attempt == 1 else data_dir.with_name(f"{data_dir.name}-{attempt}")
            )
            return LocalKafka(directory, port=free_port(), controller_port=free_port()).start()
        except BrokerError as error:
            if attempt == attempts:
                raise
            print(f"[bench] the broker did not start ({str(error).splitlines()[0]}); again")
    raise AssertionError("not reached")


def wait_serving(target: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode} while starting")
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} did not report SERVING within {timeout:.0f} s")
            time.sleep(0.2)


def wait_port(target: str, timeout: float) -> None:
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)


@dataclass
class BackendProcess:
    process: subprocess.Popen[bytes]
    target: str
    data_dir: Path
    log: Path


def start_backend(
    children: Children,
    data_dir: Path,
    bootstrap: str,
    log: Path,
    workers: int,
    roles: str = "",
    namespace: str = "",
    extra_env: dict[str, str] | None = None,
) -> BackendProcess:
    """`python -m services.cli run` (every role unless `roles`), the demo seeded, on a free
    port; `namespace` keeps its topics and consumer group apart from another backend's."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETAIL_", "BENCH_"))}
    # The backend gets gRPC's fork support as the caller had it (bench turns it off for itself).
    env.pop("GRPC_ENABLE_FORK_SUPPORT", None)
    if os.environ.get("BENCH_GRPC_FORK_SUPPORT_WAS"):
        env["GRPC_ENABLE_FORK_SUPPORT"] = os.environ["BENCH_GRPC_FORK_SUPPORT_WAS"]
    env.update(
        {
            "RETAIL_DATA_DIR": str(data_dir),
            "RETAIL_GRPC_ADDRESS": f"127.0.0.1:{port}",
            "RETAIL_KAFKA_BOOTSTRAP": bootstrap,
            "RETAIL_SEED_DEMO": "1",
            "RETAIL_GRPC_WORKERS": str(workers),
            "RETAIL_TOPIC_NAMESPACE": namespace,
        }
    )
    if namespace:
        env["RETAIL_CONSUMER_GROUP"] = namespace + "retail-projector"
    if roles:
        env["RETAIL_ROLES"] = roles
    env.update(extra_env or {})
    if "RETAIL_CACHE_DIR" in os.environ:
        env["RETAIL_CACHE_DIR"] = os.environ["RETAIL_CACHE_DIR"]
    process = children.start([sys.executable, "-m", "services.cli", "run"], log, env=env)
    target = f"127.0.0.1:{port}"
    if not roles or "api" in roles:
        wait_serving(target, 120, process)
    else:
        wait_logged(process, log, "retail backend up", 120)
    return BackendProcess(process, target, data_dir, log)


def wait_logged(process: subprocess.Popen[bytes], log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{log.name}: no {text!r} within {timeout:.0f} s")
        time.sleep(0.2)


def start_server(
    children: Children, spec: dict[str, Any], log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """One of the baselines' servers (bench.servers) on a free port."""
    port = free_port()
    process = children.start(
        [sys.executable, "-m", "bench.servers", json.dumps({**spec, "port": port})], log
    )
    target = f"127.0.0.1:{port}"
    wait_port(target, 60)
    return process, target


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@contextmanager
def cpu_use(pid: int) -> Iterator[dict[str, float]]:
    """Fills {"cores": ..., "cpu_seconds": ...}: the process's CPU time during the block over
    the wall time, and that CPU time."""
    found: dict[str, float] = {}
    process = psutil.Process(pid)
    start, cpu = time.monotonic(), _cpu_seconds(process)
    yield found
    try:
        used = _cpu_seconds(process) - cpu
    except psutil.Error:
        return
    wall = time.monotonic() - start
    found["cores"] = used / wall if wall > 0 else 0.0
    found["cpu_seconds"] = used


class TimePoint(NamedTuple):
    """CPU seconds used so far, at a moment (unix time): by the backend's API process, its
    Python children (the relay+projector process), the broker, and the whole machine."""

    at: float
    api: float
    pipeline: float
    broker: float
    machine: float


def phase_cores(points: Sequence[TimePoint], cut: float) -> dict[str, dict[str, float]]:
    """Cores busy on average before the moment `cut` and after it, each from the points
    nearest to it on its own side: {"before": {...}, "after": {...}} with the seconds each
    covers and the cores of "api", "pipeline", "broker" and "machine" (a side without two
    points is left out)."""
    before = [p for p in points if p.at <= cut]
    after = [p for p in points if p.at >= cut]
    found: dict[str, dict[str, float]] = {}
    for name, side in (("before", before), ("after", after)):
        if len(side) < 2 or side[-1].at <= side[0].at:
            continue
        first, last = side[0], side[-1]
        wall = last.at - first.at
        found[name] = {"seconds": wall} | {
            what: (getattr(last, what) - getattr(first, what)) / wall
            for what in ("api", "pipeline", "broker", "machine")
        }
    return found


@dataclass
class RssSampler:
    """Samples a process's resident memory every `every` seconds in a thread of ours, and
    keeps its peak and its CPU use (cores busy on average) between marks."""

    pid: int
    every: float = 0.1
    peak: int = 0
    marks: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _since_mark: int = 0
    _process: Any = None
    # The peak of each Python child (the relay/projector process `run` starts), by pid.
    children: dict[int, int] = field(default_factory=dict)
    # The broker's process, whose CPU is kept with the Python children's in each window.
    broker_pid: int | None = None
    # Cores busy on average in each window: the Python children together, and the broker.
    cpu_around: dict[str, dict[str, float]] = field(default_factory=dict)
    # Per window name: wall, process, Python children and broker CPU seconds, summed.
    _sums: dict[str, list[float]] = field(default_factory=dict)
    # While a timeline is kept (`timeline`): every `timeline_every` seconds, a TimePoint.
    timeline_every: float = 0.5
    _timeline: list[TimePoint] | None = None

    def _python_children(self) -> list[psutil.Process]:
        """The Python processes the backend started (the relay/projector process)."""
        return [child for child in self._process.children() if "python" in child.name()]

    def _around_now(self) -> tuple[float, float]:
        """CPU seconds so far of the Python children, and of the broker (0 when unknown)."""
        children = 0.0
        with contextlib.suppress(psutil.Error):
            children = sum(_cpu_seconds(child) for child in self._python_children())
        broker = 0.0
        if self.broker_pid is not None:
            with contextlib.suppress(psutil.Error):
                broker = _cpu_seconds(psutil.Process(self.broker_pid))
        return children, broker

    def _cpu_now(self, process: psutil.Process) -> tuple[float, float]:
        return time.monotonic(), _cpu_seconds(process)

    def _point(self) -> None:
        """A TimePoint onto the timeline being kept, if one is."""
        timeline = self._timeline
        if timeline is None:
            return
        with contextlib.suppress(psutil.Error):
            children, broker = self._around_now()
            timeline.append(
                TimePoint(time.time(), _cpu_seconds(self._process), children, broker, _busy())
            )

    @contextmanager
    def timeline(self) -> Iterator[list[TimePoint]]:
        """The CPU seconds so far of the process, its Python children, the broker and the
        whole machine, every `timeline_every` seconds of the block (and at both ends)."""
        points: list[TimePoint] = []
        self._timeline = points
        self._point()
        try:
            yield points
        finally:
            self._point()
            self._timeline = None

    def start(self) -> RssSampler:
        process = psutil.Process(self.pid)
        self._process = process

        def sample() -> None:
            next_point = 0.0
            while not self._stop.wait(self.every):
                if self._timeline is not None and time.monotonic() >= next_point:
                    next_point = time.monotonic() + self.timeline_every
                    self._point()
                try:
                    rss = int(process.memory_info().rss)
                except psutil.Error:
                    return
                self.peak = max(self.peak, rss)
                self._since_mark = max(self._since_mark, rss)
                with contextlib.suppress(psutil.Error):
                    for child in self._python_children():
                        rss = int(child.memory_info().rss)
                        self.children[child.pid] = max(self.children.get(child.pid, 0), rss)

        self._thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def mark(self, name: str) -> None:
        """The peak RSS since the previous mark, kept under `name`."""
        self.marks[name] = self._since_mark
        self._since_mark = 0

    @contextmanager
    def window(self, name: str) -> Iterator[None]:
        """The process's CPU use during the block, in cores busy on average; the windows of
        one name add up (a run made in parts)."""
        before = self._cpu_now(self._process)
        around = self._around_now()
        yield
        try:
            after = self._cpu_now(self._process)
        except psutil.Error:
            return
        later = self._around_now()
        sums = self._sums.setdefault(name, [0.0, 0.0, 0.0, 0.0])
        for index, value in enumerate(
            (after[0] - before[0], after[1] - before[1], later[0] - around[0], later[1] - around[1])
        ):
            sums[index] += value
        wall, api, pipeline, broker = sums
        if wall > 0:
            self.cpu[name] = api / wall
            self.cpu_around[name] = {
                "pipeline": pipeline / wall,
                "broker": broker / wall if self.broker_pid else 0.0,
            }

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class ForeignLoad:
    """The CPU that processes not started by this run used meanwhile (other people's tests on
    a shared machine disturb every figure here): sampled every `every` seconds."""

    every: float = 1.0
    cpu_seconds: float = 0.0
    peak_cores: float = 0.0
    seconds: float = 0.0
    # The CPU time the hypervisor gave to others while ours wanted it ("steal"): a virtual
    # machine's cores can pause for everything on them at once.
    steal_seconds: float = 0.0
    steal_peak: float = 0.0  # cores withheld, the most over one interval
    steal_peak_at: float = 0.0  # when that interval ended (unix time)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @staticmethod
    def _foreign() -> dict[tuple[int, float], float]:
        me = psutil.Process(os.getpid())
        ours = {me.pid, *(child.pid for child in me.children(recursive=True))}
        found: dict[tuple[int, float], float] = {}
        for process in psutil.process_iter(["pid", "create_time", "cpu_times"]):
            info = process.info
            if info["pid"] in ours or info["cpu_times"] is None:
                continue
            times = info["cpu_times"]
            found[(info["pid"], info["create_time"])] = float(times.user + times.system)
        return found

    def start(self) -> ForeignLoad:
        def sample() -> None:
            before, at, stolen = self._foreign(), time.monotonic(), _steal()
            while not self._stop.wait(self.every):
                try:
                    now, now_at, now_stolen = self._foreign(), time.monotonic(), _steal()
                except psutil.Error:
                    continue
                used = sum(cpu - before.get(key, 0.0) for key, cpu in now.items())
                used = max(used, 0.0)
                wall = now_at - at
                self.cpu_seconds += used
                self.seconds += wall
                self.peak_cores = max(self.peak_cores, used / wall)
                withheld = max(now_stolen - stolen, 0.0)
                self.steal_seconds += withheld
                if withheld / wall > self.steal_peak:
                    self.steal_peak, self.steal_peak_at = withheld / wall, time.time()
                before, at, stolen = now, now_at, now_stolen

        self._thread = threading.Thread(target=sample, name="foreign-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        average = self.cpu_seconds / self.seconds if self.seconds else 0.0
        steal = self.steal_seconds / self.seconds if self.seconds else 0.0
        return {
            "average_cores": average, "peak_cores": self.peak_cores, "steal_cores": steal,
            "steal_peak": self.steal_peak, "steal_peak_at": self.steal_peak_at,
        }  # fmt: skip


def _busy() -> float:
    """The machine's CPU seconds so far spent running something: neither idle, nor waiting
    for I/O, nor withheld by the hypervisor (steal); guest time is counted in user already."""
    times = psutil.cpu_times()
    left_out = ("idle", "iowait", "steal", "guest", "guest_nice")
    return float(sum(times) - sum(getattr(times, name, 0.0) for name in left_out))


def _steal() -> float:
    """The machine's steal time so far, in CPU seconds (0 where the system does not say)."""
    return float(getattr(psutil.cpu_times(), "steal", 0.0))

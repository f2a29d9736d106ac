"""`make run`'s own entry point as a new user meets it: its own broker, gRPC, Ctrl-C, restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from services.localkafka.broker import REPO_ROOT, free_port
from tests.e2e.conftest import Client, client_for

pytestmark = pytest.mark.kafka

SKU, STORE = "MC26-MILO-PLUSH-30", "STORE-SH-0001"


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (from /proc: Linux, as the broker's set-up is)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def python_children(pid: int) -> list[int]:
    """Children that are Python (the relay/projector process), not the broker's JVM."""
    return [
        child
        for child in children(pid)
        if "services.cli" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
    ]


def thread_cores(pid: int) -> set[frozenset[int]]:
    """The core sets of every thread of `pid`."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.add(frozenset(os.sched_getaffinity(int(task.name))))
        except ProcessLookupError:
            continue
    return found


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class RunCommand:
    def __init__(self, data_dir: Path) -> None:
        self.grpc_port = free_port()
        self.kafka_port = free_port()
        self.env = {
            **os.environ,
            "RETAIL_DATA_DIR": str(data_dir),
            "RETAIL_GRPC_ADDRESS": f"127.0.0.1:{self.grpc_port}",
            "RETAIL_KAFKA_PORT": str(self.kafka_port),
            "RETAIL_KAFKA_CONTROLLER_PORT": str(free_port()),
            "RETAIL_API_CPUS": "auto",
        }
        self.log = data_dir.parent / "run.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "run"],
                cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def interrupt(self) -> int:
        """Ctrl-C, as a user at the terminal would; answers the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=90)
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture
def run_command(tmp_path: Path) -> Iterator[RunCommand]:
    command = RunCommand(tmp_path / "data")
    yield command
    command.kill()


def test_run_serves_the_spine_stops_on_ctrl_c_and_keeps_its_data(
    run_command: RunCommand, connect: type[Client]
) -> None:
    run_command.start()
    client = client_for(connect, run_command.grpc_port)
    client.wait_serving(timeout=120)
    services = set(ProtoReflectionDescriptorDatabase(client.channel).get_services())
    assert "retail.v1.StockService" in services and "retail.v1.PosService" in services
    client.receive(SKU, STORE, 10)
    client.sell(SKU, STORE, 3)
    view = client.wait_for_stock(SKU, 7)
    assert view.total_on_hand == 7
    assert run_command.process is not None
    (pipeline,) = python_children(run_command.process.pid)  # the relay and projector

    assert run_command.interrupt() == 0, run_command.log.read_text()
    assert not Path(f"/proc/{pipeline}").exists(), "the relay/projector process outlived `run`"
    assert not port_open(run_command.kafka_port), "the broker outlived `run`"
    assert not port_open(run_command.grpc_port)

    run_command.start()
    client = client_for(connect, run_command.grpc_port)
    client.wait_serving(timeout=120)
    assert client.stock(SKU).total_on_hand == 7
    assert client.sell(SKU, STORE, 3).replayed
    with pytest.raises(grpc.RpcError):
        client.sell(SKU, STORE, 4)  # the sale id is taken: the sale survived the restart
    assert run_command.interrupt() == 0


def test_run_starts_the_relay_and_projector_again_when_their_process_dies(
    run_command: RunCommand, connect: type[Client]
) -> None:
    run_command.start()
    client = client_for(connect, run_command.grpc_port)
    client.wait_serving(timeout=120)
    client.receive(SKU, STORE, 10)
    assert client.wait_for_stock(SKU, 10).total_on_hand == 10
    assert run_command.process is not None
    (pipeline,) = python_children(run_command.process.pid)
    # RETAIL_API_CPUS=auto: the API's threads on one core, the relay/projector's on the others.
    every = frozenset(os.sched_getaffinity(0))
    api = thread_cores(run_command.process.pid)
    if len(every) >= 2:
        ((core,),) = api
        assert core in every
        others = {every - {core}}
    else:
        assert api == {every}
        others = {every}
    assert thread_cores(pipeline) == others
    os.kill(pipeline, signal.SIGKILL)
    client.sell(SKU, STORE, 4, sale="AFTER-KILL")  # written while nobody relays
    assert client.wait_for_stock(SKU, 6, timeout=90).total_on_hand == 6
    (again,) = python_children(run_command.process.pid)
    assert again != pipeline
    # Started again by the API's process, the child is on its own cores still.
    assert thread_cores(again) == others
    assert run_command.interrupt() == 0

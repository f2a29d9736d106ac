"""A gRPC client for the end-to-end tests, the way a POS or the online shop would call us."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.retail.v1 import (
    inventory_pb2,
    inventory_pb2_grpc,
    pos_pb2,
    pos_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from services.config import Settings
from services.localkafka import LocalKafka
from services.runtime import Backend

# A rare failure (2 of 14 full runs on 2026-12-01) has an in-process projector that
# applies nothing for 20 s and whose LeaveGroup at teardown answers UnknownMemberIdError. Its
# consumer group's joins and assignments are logged at INFO, so a failing test's captured log
# shows how far the member got.
logging.getLogger("kafka.coordinator").setLevel(logging.INFO)


@dataclass
class Client:
    channel: grpc.Channel

    def __post_init__(self) -> None:
        self.inventory = inventory_pb2_grpc.InventoryServiceStub(self.channel)
        self.pos = pos_pb2_grpc.PosServiceStub(self.channel)
        self.stocks = stock_pb2_grpc.StockServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def receive(self, sku: str, location: str, quantity: int) -> inventory_pb2.StockChange:
        request = inventory_pb2.ReceiveStockRequest(
            sku=sku, location=location, quantity=quantity, reference="DN-1"
        )
        return self.inventory.ReceiveStock(request, timeout=10)

    def sell(
        self, sku: str, location: str, quantity: int, sale: str = "S-1", terminal: str = "T-1"
    ) -> pos_pb2.SaleReceipt:
        request = pos_pb2.RecordSaleRequest(
            terminal_id=terminal,
            client_sale_id=sale,
            location=location,
            staff_id="staff-1",
            lines=[pos_pb2.SaleLineInput(sku=sku, quantity=quantity)],
        )
        return self.pos.RecordSale(request, timeout=10)

    def stock(self, sku: str, location: str = "") -> stock_pb2.GetStockResponse:
        return self.stocks.GetStock(
            stock_pb2.GetStockRequest(sku=sku, location=location), timeout=10
        )

    def stock_at(self, sku: str, position: int, attempts: int = 3) -> stock_pb2.GetStockResponse:
        """GetStock once the views reach `position`, asked again while the server answers
        that they have not yet (UNAVAILABLE, "retry shortly"): each call waits at most 10 s
        on the server, and a projector's consumer group may take longer to form right after
        the backend starts."""
        request = stock_pb2.GetStockRequest(sku=sku, min_position=position)
        for _ in range(attempts - 1):
            try:
                return self.stocks.GetStock(request, timeout=30)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
        return self.stocks.GetStock(request, timeout=30)

    def wait_for_stock(
        self, sku: str, total: int, timeout: float = 30.0
    ) -> stock_pb2.GetStockResponse:
        deadline = time.monotonic() + timeout
        while True:
            response = self.stock(sku)
            if response.total_on_hand == total or time.monotonic() > deadline:
                return response
            time.sleep(0.02)

    def wait_serving(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not report SERVING in time")
            time.sleep(0.25)


@pytest.fixture
def connect() -> Iterator[type[Client]]:
    channels: list[grpc.Channel] = []

    class Tracked(Client):
        def __init__(self, channel: grpc.Channel) -> None:
            channels.append(channel)
            super().__init__(channel)

    yield Tracked
    for channel in channels:
        channel.close()


def client_for(connect: type[Client], port: int) -> Client:
    return connect(grpc.insecure_channel(f"127.0.0.1:{port}"))


@pytest.fixture
def backend(tmp_path: Path, kafka_broker: LocalKafka, namespace: str) -> Iterator[Backend]:
    """The whole backend in this process, on the session's broker, with topics of its own."""
    settings = Settings(
        data_dir=tmp_path / "data",
        grpc_address="127.0.0.1:0",
        kafka_bootstrap=kafka_broker.bootstrap,
        topic_namespace=namespace,
        consumer_group=f"{namespace}projector",
        topic_partitions=3,
        grpc_workers=80,
    )
    with Backend(settings) as running:
        yield running


@pytest.fixture
def client(backend: Backend, connect: type[Client]) -> Client:
    return client_for(connect, backend.grpc_port)

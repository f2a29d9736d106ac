"""The spine end to end: gRPC in, event store, relay, real Kafka, projector, SQL view, gRPC out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from protos.retail.v1 import stock_pb2
from services.config import Settings
from services.localkafka import LocalKafka
from services.runtime import Backend
from tests.e2e.conftest import Client, client_for

pytestmark = pytest.mark.kafka

SKU, STORE = "MC26-TINA-PLUSH-30", "STORE-BJ-0001"


@pytest.fixture
def settings(tmp_path: Path, kafka_broker: LocalKafka, namespace: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        grpc_address="127.0.0.1:0",
        kafka_bootstrap=kafka_broker.bootstrap,
        topic_namespace=namespace,
        consumer_group=f"{namespace}projector",
        topic_partitions=3,
    )


@pytest.fixture
def start(settings: Settings) -> Iterator[Callable[[], Backend]]:
    started: list[Backend] = []

    def start_backend() -> Backend:
        backend = Backend(settings).start()
        started.append(backend)
        return backend

    yield start_backend
    for backend in started:
        backend.stop()


def test_health_and_reflection_show_every_service(
    start: Callable[[], Backend], connect: type[Client]
) -> None:
    backend = start()
    client = client_for(connect, backend.grpc_port)
    answer = client.health.Check(health_pb2.HealthCheckRequest(service="retail.v1.PosService"))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    services = set(ProtoReflectionDescriptorDatabase(client.channel).get_services())
    assert {
        "retail.v1.CatalogService", "retail.v1.LocationService", "retail.v1.InventoryService",
        "retail.v1.PosService", "retail.v1.StockService", "grpc.health.v1.Health",
    } <= services  # fmt: skip


def test_receive_ten_sell_three_and_the_view_shows_seven_there_and_in_total(
    start: Callable[[], Backend], connect: type[Client]
) -> None:
    client = client_for(connect, start().grpc_port)
    received = client.receive(SKU, STORE, 10)
    assert received.on_hand == 10
    receipt = client.sell(SKU, STORE, 3)
    assert receipt.total.minor_units == 3 * 12800 and not receipt.replayed
    # Read-your-writes: an answer at or past the sale's position includes the sale. (An
    # answer that shows the sale may still name an older position: the position is read
    # before the rows, so it never claims more than they hold.)
    view = client.stock_at(SKU, receipt.position)
    assert view.view_position >= receipt.position
    assert view.total_on_hand == 7
    assert [(row.location, row.on_hand) for row in view.locations] == [(STORE, 7)]
    assert client.stock(SKU, STORE).locations[0].on_hand == 7


def test_refusals_are_clear_and_write_nothing(
    start: Callable[[], Backend], connect: type[Client]
) -> None:
    backend = start()
    client = client_for(connect, backend.grpc_port)
    assert backend.app is not None
    head = backend.app.recorder.max_notification_id()
    cases: list[tuple[Callable[[], object], grpc.StatusCode, str]] = [
        (lambda: client.receive("NO-SUCH-SKU", STORE, 1), grpc.StatusCode.NOT_FOUND, "NO-SUCH-SKU"),
        (
            lambda: client.receive(SKU, "NO-SUCH-STORE", 1),
            grpc.StatusCode.NOT_FOUND,
            "NO-SUCH-STORE",
        ),
        (lambda: client.receive(SKU, STORE, 0), grpc.StatusCode.INVALID_ARGUMENT, "quantity"),
        (lambda: client.receive(SKU, STORE, -3), grpc.StatusCode.INVALID_ARGUMENT, "quantity"),
        (lambda: client.sell(SKU, STORE, 0), grpc.StatusCode.INVALID_ARGUMENT, "lines[0].quantity"),
        (lambda: client.sell(SKU, "WH-NORTH", 1), grpc.StatusCode.FAILED_PRECONDITION, "WH-NORTH"),
    ]
    for call, code, mentioned in cases:
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == code
        assert mentioned in (refused.value.details() or "")
    assert backend.app.recorder.max_notification_id() == head
    with pytest.raises(grpc.RpcError) as unknown:
        client.stock("NO-SUCH-SKU")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_retried_sale_answers_the_first_receipt(
    start: Callable[[], Backend], connect: type[Client]
) -> None:
    client = client_for(connect, start().grpc_port)
    client.receive(SKU, STORE, 10)
    first = client.sell(SKU, STORE, 3)
    again = client.sell(SKU, STORE, 3)
    assert again.replayed and again.sale_id == first.sale_id
    with pytest.raises(grpc.RpcError) as reused:
        client.sell(SKU, STORE, 5)
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert client.wait_for_stock(SKU, 7).total_on_hand == 7


def test_a_restart_keeps_all_stock_and_sales(
    start: Callable[[], Backend], connect: type[Client]
) -> None:
    first = start()
    client = client_for(connect, first.grpc_port)
    client.receive(SKU, STORE, 10)
    client.sell(SKU, STORE, 3)
    assert client.wait_for_stock(SKU, 7).total_on_hand == 7
    first.stop()

    second = start()
    client = client_for(connect, second.grpc_port)
    assert client.stock(SKU).total_on_hand == 7
    assert client.sell(SKU, STORE, 3).replayed
    assert client.receive(SKU, STORE, 1).on_hand == 8
    assert client.wait_for_stock(SKU, 8).total_on_hand == 8


@pytest.mark.postgres
def test_the_spine_on_postgresql(
    settings: Settings, pg_database: str, pg_views_url: str, connect: type[Client]
) -> None:
    """The same path with the event store and the views on PostgreSQL, chosen by configuration."""
    on_postgres = settings.with_changes(
        event_store="postgres", postgres_dsn=pg_database, views_url=pg_views_url
    )
    with Backend(on_postgres) as backend:
        client = client_for(connect, backend.grpc_port)
        client.receive(SKU, STORE, 10)
        client.sell(SKU, STORE, 3)
        assert client.sell(SKU, STORE, 3).replayed
        assert client.wait_for_stock(SKU, 7).total_on_hand == 7


def test_a_query_with_the_sales_position_never_sees_the_old_number(
    start: Callable[[], Backend], connect: type[Client]
) -> None:
    client = client_for(connect, start().grpc_port)
    client.receive(SKU, STORE, 100)
    for n in range(20):
        receipt = client.sell(SKU, STORE, 1, sale=f"RYW-{n}")
        view = client.stocks.GetStock(
            stock_pb2.GetStockRequest(sku=SKU, min_position=receipt.position), timeout=15
        )
        assert view.view_position >= receipt.position
        assert view.total_on_hand == 100 - (n + 1)


def test_the_pipeline_status_shows_every_partition_and_drains_to_no_lag(
    start: Callable[[], Backend], connect: type[Client]
) -> None:
    client = client_for(connect, start().grpc_port)
    receipt = client.receive(SKU, STORE, 5)
    client.stock_at(SKU, receipt.position)
    status = client.stocks.GetPipelineStatus(stock_pb2.GetPipelineStatusRequest())
    assert len(status.partitions) == 4 * 3  # four topics of three partitions
    assert status.view_position >= receipt.position
    assert status.total_lag == 0


def test_waiting_for_a_position_the_views_cannot_reach_is_a_clear_unavailable(
    start: Callable[[], Backend], connect: type[Client]
) -> None:
    client = client_for(connect, start().grpc_port)
    with pytest.raises(grpc.RpcError) as behind:
        client.stocks.GetStock(stock_pb2.GetStockRequest(sku=SKU, min_position=10**9), timeout=3)
    assert behind.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "not yet 1000000000" in (behind.value.details() or "")

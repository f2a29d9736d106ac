"""The unified stock view's queries through gRPC: totals, nearby stores, pages, a live watch."""

from __future__ import annotations

import threading

import grpc
import pytest

from protos.retail.v1 import common_pb2, stock_pb2
from services.runtime import Backend
from tests.e2e.conftest import Client

pytestmark = pytest.mark.kafka

SKU = "MC26-TINA-KEYCHAIN"


def settle(client: Client, position: int) -> None:
    client.stocks.GetStock(stock_pb2.GetStockRequest(sku=SKU, min_position=position), timeout=20)


def test_stock_by_channel_district_and_online_available_to_promise(client: Client) -> None:
    client.receive(SKU, "STORE-BJ-0001", 5)
    client.receive(SKU, "STORE-BJ-0002", 3)
    last = client.receive(SKU, "ONLINE-FLAGSHIP", 9)
    settle(client, last.position)
    view = client.stock(SKU)
    assert view.total_on_hand == 17
    assert dict(view.districts) == {"Dongcheng": 5, "Chaoyang": 3, "Shunyi": 9}
    assert {c.channel: c.on_hand for c in view.channels} == {
        common_pb2.CHANNEL_STORE: 8, common_pb2.CHANNEL_ONLINE: 9,
    }  # fmt: skip
    assert view.online_available_to_promise == 9


def test_nearby_stores_come_same_district_first_then_the_city(client: Client) -> None:
    client.receive(SKU, "STORE-BJ-0001", 2)  # Dongcheng
    client.receive(SKU, "STORE-BJ-0002", 6)  # Chaoyang
    last = client.receive(SKU, "STORE-SH-0001", 9)  # another city
    settle(client, last.position)
    found = client.stocks.FindNearbyStock(
        stock_pb2.FindNearbyStockRequest(sku=SKU, city="Beijing", district="Dongcheng")
    )
    assert [(p.stock.location, p.same_district) for p in found.places] == [
        ("STORE-BJ-0001", True), ("STORE-BJ-0002", False),
    ]  # fmt: skip
    with pytest.raises(grpc.RpcError) as refused:
        client.stocks.FindNearbyStock(stock_pb2.FindNearbyStockRequest(sku=SKU))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_stock_rows_come_a_page_at_a_time_with_filters(client: Client) -> None:
    for location in ("STORE-BJ-0001", "STORE-BJ-0002", "STORE-SH-0001", "WH-NORTH"):
        last = client.receive(SKU, location, 4)
    sale = client.sell(SKU, "STORE-BJ-0001", 6, sale="NEG-1")
    settle(client, max(last.position, sale.position))
    pages, token = [], ""
    while True:
        page = client.stocks.ListStock(
            stock_pb2.ListStockRequest(sku=SKU, page_size=3, page_token=token)
        )
        pages.append([row.stock.location for row in page.rows])
        token = page.next_page_token
        if not token:
            break
    assert pages == [["STORE-BJ-0001", "STORE-BJ-0002", "STORE-SH-0001"], ["WH-NORTH"]]
    negative = client.stocks.ListStock(stock_pb2.ListStockRequest(negative_only=True))
    assert [(r.sku, r.stock.on_hand) for r in negative.rows] == [(SKU, -2)]
    stores = client.stocks.ListStock(
        stock_pb2.ListStockRequest(channel=common_pb2.CHANNEL_STORE, district="Chaoyang")
    )
    assert [r.stock.location for r in stores.rows] == ["STORE-BJ-0002"]
    with pytest.raises(grpc.RpcError) as refused:
        client.stocks.ListStock(stock_pb2.ListStockRequest(page_token="not a token!"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_watching_a_sku_streams_its_changes_as_the_views_apply_them(
    backend: Backend, client: Client
) -> None:
    first = client.receive(SKU, "STORE-BJ-0001", 10)
    settle(client, first.position)
    seen: list[int] = []
    call = client.stocks.WatchStock(stock_pb2.WatchStockRequest(sku=SKU), timeout=30)
    reader_started = threading.Event()

    def read() -> None:
        reader_started.set()
        try:
            for change in call:
                seen.append(change.stock.on_hand)
                if change.stock.on_hand == 7:
                    call.cancel()  # type: ignore[no-untyped-call]
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    reader_started.wait()
    client.sell(SKU, "STORE-BJ-0001", 3, sale="W-1")
    reader.join(timeout=30)
    assert seen[0] == 10 and seen[-1] == 7


def test_a_kept_stock_answer_gives_way_to_the_next_projected_write(client: Client) -> None:
    first = client.receive(SKU, "STORE-SH-0001", 7)
    settle(client, first.position)
    before = client.stock(SKU, "STORE-SH-0001")
    assert client.stock(SKU, "STORE-SH-0001").locations == before.locations
    sale = client.sell(SKU, "STORE-SH-0001", 2, sale="CACHE-1")
    settle(client, sale.position)
    after = client.stock(SKU, "STORE-SH-0001")  # no min_position: still sees the waited-for write
    assert after.view_position >= sale.position
    assert after.locations[0].on_hand == before.locations[0].on_hand - 2

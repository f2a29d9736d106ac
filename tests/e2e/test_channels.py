"""Every channel through gRPC against the real broker: flash sale, reservations, pop-ups, POS."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from protos.retail.v1 import (
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    location_pb2,
    location_pb2_grpc,
    order_pb2,
    order_pb2_grpc,
    pos_pb2,
    stock_pb2,
)
from tests.e2e.conftest import Client

pytestmark = pytest.mark.kafka

FLAGSHIP, STORE, POPUP, WAREHOUSE = "ONLINE-FLAGSHIP", "STORE-BJ-0001", "POPUP-SH-EXPO", "WH-NORTH"
LIMITED = "LTD-HOURGLASS-01"


def orders(client: Client) -> order_pb2_grpc.OrderServiceStub:
    return order_pb2_grpc.OrderServiceStub(client.channel)


def test_64_concurrent_buyers_of_a_limited_sku_confirm_exactly_the_stock(client: Client) -> None:
    stock, buyers, attempts = 150, 64, 4  # 256 purchases for 150 units
    client.receive(LIMITED, FLAGSHIP, stock)
    stub = orders(client)
    outcomes: Counter[int] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(buyers)

    def buyer(n: int) -> None:
        start.wait()
        for i in range(attempts):
            try:
                answer = stub.FlashBuy(
                    order_pb2.FlashBuyRequest(
                        order_id=f"FB-{n}-{i}", sku=LIMITED, location=FLAGSHIP, quantity=1
                    ),
                    timeout=30,
                )
            except grpc.RpcError as error:  # every buyer must get a definite answer
                errors.append(error)
                continue
            with lock:
                outcomes[answer.outcome] += 1

    threads = [threading.Thread(target=buyer, args=(n,)) for n in range(buyers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert outcomes[order_pb2.FLASH_OUTCOME_CONFIRMED] == stock
    assert outcomes[order_pb2.FLASH_OUTCOME_SOLD_OUT] == buyers * attempts - stock
    view = client.wait_for_stock(LIMITED, 0)
    assert view.total_on_hand == 0
    levels = inventory_pb2_grpc.InventoryServiceStub(client.channel).GetStockLevels(
        inventory_pb2.GetStockLevelsRequest(sku=LIMITED, location=FLAGSHIP)
    )
    assert (levels.levels.on_hand, levels.levels.available) == (0, 0)


def test_a_retried_flash_purchase_answers_the_first_outcome(client: Client) -> None:
    client.receive(LIMITED, FLAGSHIP, 1)
    stub = orders(client)
    request = order_pb2.FlashBuyRequest(order_id="FB-1", sku=LIMITED, location=FLAGSHIP)
    first, again = stub.FlashBuy(request), stub.FlashBuy(request)
    assert first.outcome == again.outcome == order_pb2.FLASH_OUTCOME_CONFIRMED
    assert again.replayed
    other = stub.FlashBuy(
        order_pb2.FlashBuyRequest(order_id="FB-2", sku=LIMITED, location=FLAGSHIP)
    )
    assert other.outcome == order_pb2.FLASH_OUTCOME_SOLD_OUT


def test_a_reservation_expires_by_itself_and_its_stock_returns(client: Client) -> None:
    sku = "MC26-TINA-KEYCHAIN"
    client.receive(sku, FLAGSHIP, 5)
    stub = orders(client)
    held = stub.Reserve(
        order_pb2.ReserveRequest(
            order_id="ORD-1", location=FLAGSHIP, hold_seconds=1,
            lines=[common_pb2.SkuQuantity(sku=sku, quantity=4)],
        )
    )  # fmt: skip
    assert held.status == order_pb2.RESERVATION_STATUS_HELD
    with pytest.raises(grpc.RpcError) as refused:
        stub.Reserve(
            order_pb2.ReserveRequest(
                order_id="ORD-2", location=FLAGSHIP,
                lines=[common_pb2.SkuQuantity(sku=sku, quantity=2)],
            )
        )  # fmt: skip
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    inventory = inventory_pb2_grpc.InventoryServiceStub(client.channel)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        levels = inventory.GetStockLevels(
            inventory_pb2.GetStockLevelsRequest(sku=sku, location=FLAGSHIP)
        ).levels
        if levels.reserved == 0:
            break
        time.sleep(0.1)
    assert (levels.reserved, levels.available) == (0, 5)
    expired = stub.GetReservation(order_pb2.OrderRequest(order_id="ORD-1"))
    assert expired.status == order_pb2.RESERVATION_STATUS_EXPIRED
    with pytest.raises(grpc.RpcError) as late:
        stub.ConfirmReservation(order_pb2.OrderRequest(order_id="ORD-1"))
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_popup_is_stocked_by_transfer_sells_sends_leftovers_back_and_closes(
    client: Client,
) -> None:
    sku = "MC26-MILO-FIGURINE"
    inventory = inventory_pb2_grpc.InventoryServiceStub(client.channel)
    locations = location_pb2_grpc.LocationServiceStub(client.channel)
    client.receive(sku, WAREHOUSE, 20)
    inventory.DispatchTransfer(
        inventory_pb2.DispatchTransferRequest(
            transfer_id="TR-IN", from_location=WAREHOUSE, to_location=POPUP,
            lines=[common_pb2.SkuQuantity(sku=sku, quantity=10)],
        )
    )  # fmt: skip
    arrived = inventory.ReceiveTransfer(
        inventory_pb2.ReceiveTransferRequest(
            transfer_id="TR-IN", lines=[common_pb2.SkuQuantity(sku=sku, quantity=9)]
        )
    )
    assert [(q.sku, q.quantity) for q in arrived.lost_in_transit] == [(sku, 1)]
    client.sell(sku, POPUP, 4, sale="P-1", terminal="POP-T1")
    locations.StartClosingPopup(location_pb2.PopupRequest(location=POPUP))
    with pytest.raises(grpc.RpcError) as refused:
        locations.ClosePopup(location_pb2.ClosePopupRequest(location=POPUP, final_count={sku: 5}))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "transfer leftovers out first" in (refused.value.details() or "")
    back = inventory.DispatchTransfer(
        inventory_pb2.DispatchTransferRequest(
            transfer_id="TR-BACK", from_location=POPUP, to_location=WAREHOUSE,
            lines=[common_pb2.SkuQuantity(sku=sku, quantity=5)],
        )
    )  # fmt: skip
    closed = locations.ClosePopup(
        location_pb2.ClosePopupRequest(location=POPUP, final_count={sku: 0})
    )
    assert closed.status == common_pb2.POPUP_STATUS_CLOSED
    # Read-your-writes: the total alone (10) was also true right after the first dispatch.
    view = client.stocks.GetStock(
        stock_pb2.GetStockRequest(sku=sku, min_position=back.position), timeout=30
    )
    assert view.total_on_hand == 10  # 10 on hand at the warehouse, 5 on their way back
    assert {row.location: row.on_hand for row in view.locations}[POPUP] == 0
    warehouse = {row.location: row.levels for row in view.locations}[WAREHOUSE]
    assert (warehouse.on_hand, warehouse.incoming) == (10, 5)


def test_a_late_offline_sale_goes_below_zero_is_flagged_and_shows_in_the_view(
    client: Client,
) -> None:
    sku = "JW-SNOWFLAKE-PENDANT"
    client.receive(sku, STORE, 1)
    rung_up = Timestamp()
    rung_up.FromDatetime(datetime.now(UTC) - timedelta(hours=4))
    receipt = client.pos.RecordSale(
        pos_pb2.RecordSaleRequest(
            terminal_id="T-OFF", client_sale_id="OFF-1", location=STORE, occurred_at=rung_up,
            lines=[pos_pb2.SaleLineInput(sku=sku, quantity=3)],
        )
    )  # fmt: skip
    assert receipt.late and list(receipt.negative_stock_skus) == [sku]
    assert client.wait_for_stock(sku, -2).total_on_hand == -2


def test_an_idempotent_sale_retry_and_a_partial_return_through_grpc(client: Client) -> None:
    sku = "MC26-TINA-PLUSH-30"
    client.receive(sku, STORE, 10)
    first = client.sell(sku, STORE, 3, sale="S-R")
    assert client.sell(sku, STORE, 3, sale="S-R").replayed
    returned = client.pos.RecordReturn(
        pos_pb2.RecordReturnRequest(
            terminal_id="T-1", client_sale_id="S-R", return_id="R-1",
            lines=[common_pb2.SkuQuantity(sku=sku, quantity=1)],
        )
    )  # fmt: skip
    assert returned.refund.minor_units == first.total.minor_units // 3
    with pytest.raises(grpc.RpcError) as refused:
        client.pos.RecordReturn(
            pos_pb2.RecordReturnRequest(
                terminal_id="T-1", client_sale_id="S-R", return_id="R-2",
                lines=[common_pb2.SkuQuantity(sku=sku, quantity=3)],
            )
        )  # fmt: skip
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert client.wait_for_stock(sku, 8).total_on_hand == 8

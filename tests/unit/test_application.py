from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import (
    InvalidValueError,
    LocationCodeTakenError,
    NotASellingLocationError,
    PaymentsDoNotAddUpError,
    SaleIdReusedError,
    SkuCodeTakenError,
    UnknownLocationError,
    UnknownSkuError,
)
from domain.sales import Payment
from domain.values import LocationKind, Money, PaymentMethod
from services.application import RetailApp, SaleLineInput
from tests.unit.conftest import Clock


def head(app: RetailApp) -> int:
    return app.recorder.max_notification_id() or 0


def sell(app: RetailApp, sale: str, quantity: int, sku: str = "TINA-30", location: str = "STORE-1"):  # type: ignore[no-untyped-def]
    return app.record_sale(
        terminal="T-1",
        client_sale_id=sale,
        location=location,
        staff="staff-7",
        occurred_at=None,
        lines=[SaleLineInput(sku, quantity)],
        payments=[],
    )


def test_receiving_stock_answers_the_new_on_hand_and_a_position(app: RetailApp) -> None:
    first = app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    second = app.receive_stock("TINA-30", "STORE-1", 5, "DN-2")
    assert (first.on_hand, second.on_hand) == (10, 15)
    assert second.position > first.position == head(app) - 1


@pytest.mark.parametrize(
    ("sku", "location", "quantity", "error"),
    [
        ("NOPE", "STORE-1", 1, UnknownSkuError),
        ("TINA-30", "NOWHERE", 1, UnknownLocationError),
        ("TINA-30", "STORE-1", 0, InvalidValueError),
        ("TINA-30", "STORE-1", -5, InvalidValueError),
    ],
)
def test_a_refused_receipt_writes_nothing(
    app: RetailApp, sku: str, location: str, quantity: int, error: type[Exception]
) -> None:
    before = head(app)
    with pytest.raises(error):
        app.receive_stock(sku, location, quantity, "DN-1")
    assert head(app) == before


def test_a_sale_lowers_on_hand_and_prices_lines_at_list_price(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    receipt = sell(app, "S-1", 3)
    item = app.get_stock_item("TINA-30", "STORE-1")
    assert item is not None and item.on_hand == 7
    assert receipt.total == Money(3 * 12800, "CNY")
    assert not receipt.replayed and receipt.negative_stock_skus == []


def test_posting_the_same_sale_twice_returns_the_first_receipt_and_changes_nothing(
    app: RetailApp,
) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    first = sell(app, "S-1", 3)
    before = head(app)
    again = sell(app, "S-1", 3)
    assert head(app) == before
    assert again.replayed
    assert (again.sale_id, again.total, again.lines, again.recorded_at) == (
        first.sale_id, first.total, first.lines, first.recorded_at,
    )  # fmt: skip
    assert again.position >= first.position
    item = app.get_stock_item("TINA-30", "STORE-1")
    assert item is not None and item.on_hand == 7


def test_a_different_sale_under_a_used_id_is_refused(app: RetailApp) -> None:
    sell(app, "S-1", 3)
    with pytest.raises(SaleIdReusedError):
        sell(app, "S-1", 4)


def test_a_sale_beyond_on_hand_is_recorded_and_flagged(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "STORE-1", 1, "DN-1")
    receipt = sell(app, "S-1", 3)
    assert receipt.negative_stock_skus == ["TINA-30"]
    item = app.get_stock_item("TINA-30", "STORE-1")
    assert item is not None and item.on_hand == -2


def test_a_warehouse_does_not_post_till_sales(app: RetailApp) -> None:
    before = head(app)
    with pytest.raises(NotASellingLocationError):
        sell(app, "S-1", 1, location="WH-1")
    assert head(app) == before


def test_a_sale_of_an_unknown_sku_writes_nothing(app: RetailApp) -> None:
    before = head(app)
    with pytest.raises(UnknownSkuError):
        sell(app, "S-1", 1, sku="NOPE")
    assert head(app) == before


def test_payments_that_do_not_add_up_refuse_the_sale(app: RetailApp) -> None:
    with pytest.raises(PaymentsDoNotAddUpError):
        app.record_sale(
            "T-1", "S-1", "STORE-1", "", None, [SaleLineInput("TINA-30", 1)],
            [Payment(PaymentMethod.CASH, Money(100, "CNY"))],
        )  # fmt: skip


def test_one_sale_with_two_lines_of_one_sku_sells_both(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "POPUP-1", 10, "DN-1")
    app.record_sale(
        "T-9", "S-1", "POPUP-1", "", None,
        [SaleLineInput("TINA-30", 2), SaleLineInput("TINA-30", 3)], [],
    )  # fmt: skip
    item = app.get_stock_item("TINA-30", "POPUP-1")
    assert item is not None and item.on_hand == 5


def test_registering_the_same_sku_twice_is_harmless_but_different_details_are_refused(
    app: RetailApp,
) -> None:
    sku, position = app.register_sku("TINA-30", "Tina plush 30 cm", "Mascots", Money(12800, "CNY"))
    assert position == 0 and sku.code == "TINA-30"
    with pytest.raises(SkuCodeTakenError):
        app.register_sku("TINA-30", "Another name", "Mascots", Money(12800, "CNY"))
    with pytest.raises(LocationCodeTakenError):
        app.register_location("STORE-1", LocationKind.POPUP, "Store 1", "Beijing", "Dongcheng")


def test_concurrent_sales_of_one_sku_are_all_counted(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "STORE-1", 100, "DN-1")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                sell(app, f"S-{n}-{i}", 1)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    item = app.get_stock_item("TINA-30", "STORE-1")
    assert item is not None and item.on_hand == 100 - 40


def _a_few_writes(app: RetailApp) -> list[tuple[object, ...]]:
    app.register_sku("TINA-30", "Tina plush 30 cm", "Mascots", Money(12800, "CNY"))
    app.register_location("STORE-1", LocationKind.PARTNER_STORE, "Store 1", "Beijing", "Dongcheng")
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    sell(app, "S-1", 3)
    stored: list[tuple[object, ...]] = []
    for n in app.recorder.select_notifications(start=1, limit=100):
        state = json.loads(n.state)
        del state["timestamp"]  # the library's own clock: differs between the two apps
        stored.append((n.id, n.originator_id, n.originator_version, n.topic, state))
    return stored


def test_saves_store_exactly_what_the_librarys_save_would(clock) -> None:  # type: ignore[no-untyped-def]
    """_save puts the aggregates' events into the store itself (see RetailApp._put): the
    stored events are the same as through Application.save, and the library's save is still
    used where it would do more than store them (here: snapshotting on)."""
    stored: list[list[tuple[object, ...]]] = []
    for plain in (True, False):
        app = RetailApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
        assert app._plain_saves
        app._plain_saves = plain
        stored.append(_a_few_writes(app))
        app.close()
    assert stored[0] == stored[1]
    assert len(stored[0]) >= 4

    snapshotting = RetailApp(
        env={"PERSISTENCE_MODULE": "eventsourcing.popo", "IS_SNAPSHOTTING_ENABLED": "y"},
        clock=clock,
    )
    assert not snapshotting._plain_saves
    assert _a_few_writes(snapshotting) == stored[0]
    snapshotting.close()


def test_a_sale_or_return_said_to_happen_well_after_our_clock_is_refused(
    app: RetailApp, clock: Clock
) -> None:
    """A till clock an hour or more ahead: refused with the reason, nothing written (a time
    past the year 9999 in Asia/Shanghai would otherwise reach the views as a poison event)."""
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    lines = [SaleLineInput("TINA-30", 1)]
    before = head(app)
    for ahead in (timedelta(hours=2), datetime(9999, 12, 31, 20, tzinfo=UTC) - clock.now):
        with pytest.raises(InvalidValueError, match=r"occurred_at.*ahead of the server's clock"):
            app.record_sale("T-1", "S-9", "STORE-1", "staff-7", clock.now + ahead, lines, [])
    assert head(app) == before
    sold = app.record_sale(
        "T-1", "S-1", "STORE-1", "staff-7", clock.now + timedelta(minutes=30), lines, []
    )
    with pytest.raises(InvalidValueError, match="occurred_at"):
        app.record_return("T-1", "S-1", "R-1", {"TINA-30": 1}, [], damaged=False,
                          occurred_at=clock.now + timedelta(days=1))  # fmt: skip
    assert head(app) == sold.position

"""Partner stores and pop-ups: the pop-up lifecycle, transfers, returns, late sales and shifts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import (
    AlreadyExistsError,
    InsufficientStockError,
    InvalidStateError,
    LocationNotOpenError,
    PaymentsDoNotAddUpError,
    PopupStillHoldsStockError,
    ReturnExceedsSaleError,
    TerminalElsewhereError,
    UnknownSaleError,
)
from domain.sales import Payment
from domain.shifts import ZTotal
from domain.values import AdjustmentReason, LocationKind, Money, PaymentMethod, PopupStatus
from services.application import RetailApp, SaleLineInput
from tests.unit.conftest import Clock


def cny(amount: int) -> Money:
    return Money(amount, "CNY")


def on_hand(app: RetailApp, sku: str, location: str) -> int:
    return app.stock_levels(sku, location).on_hand


def sell(app: RetailApp, sale: str, qty: int, location: str = "STORE-1", **kw: object):  # type: ignore[no-untyped-def]
    return app.record_sale(
        terminal=str(kw.get("terminal", "T-1")), client_sale_id=sale, location=location,
        staff="staff-1", occurred_at=kw.get("occurred_at"),  # type: ignore[arg-type]
        lines=[SaleLineInput("TINA-30", qty, discount=kw.get("discount"))],  # type: ignore[arg-type]
        payments=[],
    )  # fmt: skip


def test_a_popup_goes_planned_open_closing_closed_and_sells_only_while_open(app: RetailApp) -> None:
    app.register_location("POPUP-2", LocationKind.POPUP, "Expo", "Chengdu", "Jinjiang")
    app.receive_stock("TINA-30", "POPUP-2", 5, "DN-1")  # stock arrives before opening
    with pytest.raises(LocationNotOpenError):
        sell(app, "S-1", 1, "POPUP-2")
    app.open_popup("POPUP-2")
    sell(app, "S-1", 1, "POPUP-2")
    app.start_closing_popup("POPUP-2")
    with pytest.raises(LocationNotOpenError):
        sell(app, "S-2", 1, "POPUP-2")
    with pytest.raises(PopupStillHoldsStockError) as refused:
        app.close_popup("POPUP-2", {"TINA-30": 4})
    assert refused.value.leftovers == {"TINA-30": 4}
    app.dispatch_transfer("TR-BACK", "POPUP-2", "WH-1", {"TINA-30": 4})
    location, _ = app.close_popup("POPUP-2", {"TINA-30": 0})
    assert location.status is PopupStatus.CLOSED and location.final_count == {"TINA-30": 0}
    with pytest.raises(InvalidStateError):
        app.open_popup("POPUP-2")


def test_a_final_count_that_finds_units_refuses_the_close(app: RetailApp) -> None:
    app.register_location("POPUP-2", LocationKind.POPUP, "Expo", "Chengdu", "Jinjiang")
    app.open_popup("POPUP-2")
    app.start_closing_popup("POPUP-2")
    with pytest.raises(PopupStillHoldsStockError):
        app.close_popup("POPUP-2", {"TINA-30": 2})


def test_a_transfer_shows_incoming_then_arrives_short_with_the_loss_recorded(
    app: RetailApp,
) -> None:
    app.receive_stock("TINA-30", "WH-1", 10, "DN-1")
    sent = app.dispatch_transfer("TR-1", "WH-1", "POPUP-1", {"TINA-30": 6})
    assert sent.received is None
    assert app.stock_levels("TINA-30", "WH-1").on_hand == 4
    assert app.stock_levels("TINA-30", "POPUP-1").incoming == 6
    arrived = app.receive_transfer("TR-1", {"TINA-30": 5})
    assert arrived.lost == {"TINA-30": 1}
    levels = app.stock_levels("TINA-30", "POPUP-1")
    assert (levels.on_hand, levels.incoming) == (5, 0)
    assert app.receive_transfer("TR-1", {"TINA-30": 5}).lost == {"TINA-30": 1}  # a retry
    with pytest.raises(InvalidStateError):
        app.receive_transfer("TR-1", {"TINA-30": 6})


def test_a_transfer_cannot_send_more_than_is_available(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "WH-1", 2, "DN-1")
    with pytest.raises(InsufficientStockError):
        app.dispatch_transfer("TR-1", "WH-1", "STORE-1", {"TINA-30": 3})
    assert app.stock_levels("TINA-30", "STORE-1").incoming == 0


def test_a_retried_transfer_is_answered_and_a_different_one_refused(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "WH-1", 10, "DN-1")
    app.dispatch_transfer("TR-1", "WH-1", "STORE-1", {"TINA-30": 3})
    app.dispatch_transfer("TR-1", "WH-1", "STORE-1", {"TINA-30": 3})
    assert on_hand(app, "TINA-30", "WH-1") == 7
    with pytest.raises(AlreadyExistsError):
        app.dispatch_transfer("TR-1", "WH-1", "STORE-1", {"TINA-30": 4})


def test_returns_refer_to_the_sale_may_be_partial_and_never_exceed_it(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    sell(app, "S-1", 3, discount=cny(100))  # net 38300 for 3 units
    first = app.record_return("T-1", "S-1", "R-1", {"TINA-30": 1}, [], damaged=False)
    second = app.record_return("T-1", "S-1", "R-2", {"TINA-30": 2}, [], damaged=True)
    assert first.refund.minor_units + second.refund.minor_units == 3 * 12800 - 100
    with pytest.raises(ReturnExceedsSaleError):
        app.record_return("T-1", "S-1", "R-3", {"TINA-30": 1}, [], damaged=False)
    levels = app.stock_levels("TINA-30", "STORE-1")
    assert (levels.on_hand, levels.unavailable) == (10, 2)
    assert app.record_return("T-1", "S-1", "R-1", {"TINA-30": 1}, [], damaged=False).replayed
    assert on_hand(app, "TINA-30", "STORE-1") == 10


def test_a_return_of_an_unknown_sale_or_with_wrong_refunds_is_refused(app: RetailApp) -> None:
    with pytest.raises(UnknownSaleError):
        app.record_return("T-1", "NOPE", "R-1", {"TINA-30": 1}, [], damaged=False)
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    sell(app, "S-1", 1)
    with pytest.raises(PaymentsDoNotAddUpError):
        app.record_return("T-1", "S-1", "R-1", {"TINA-30": 1},
                          [Payment(PaymentMethod.CASH, cny(100))], damaged=False)  # fmt: skip


def test_a_late_offline_sale_is_accepted_below_zero_and_flagged(
    app: RetailApp, clock: Clock
) -> None:
    app.receive_stock("TINA-30", "STORE-1", 1, "DN-1")
    rung_up = clock.now - timedelta(hours=3)
    receipt = sell(app, "S-OFF-1", 2, occurred_at=rung_up)
    assert receipt.late and receipt.negative_stock_skus == ["TINA-30"]
    assert receipt.occurred_at == rung_up
    assert on_hand(app, "TINA-30", "STORE-1") == -1


def test_shifts_open_with_a_float_and_close_with_a_z_report(app: RetailApp, clock: Clock) -> None:
    app.open_shift("T-1", "SH-1", "STORE-1", "staff-1", cny(50000))
    with pytest.raises(InvalidStateError):
        app.open_shift("T-1", "SH-2", "STORE-1", "staff-1", cny(50000))
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    during = sell(app, "S-1", 1)
    assert during.shift_id == "SH-1" and not during.after_shift_close
    clock.advance(hours=8)
    shift, _ = app.close_shift(
        "T-1", "SH-1", [ZTotal(PaymentMethod.CASH, cny(12800))], counted_cash=cny(62700)
    )
    assert shift.closed_at == clock.now and shift.counted_cash == cny(62700)
    clock.advance(hours=14)
    app.open_shift("T-1", "SH-2", "STORE-1", "staff-2", cny(50000))
    late = sell(app, "S-OFF-9", 1, occurred_at=clock.now - timedelta(hours=15))
    assert (late.shift_id, late.after_shift_close, late.late) == ("SH-2", True, True)


def test_a_terminal_belongs_to_one_location(app: RetailApp) -> None:
    app.open_shift("T-1", "SH-1", "STORE-1", "staff-1", cny(0))
    with pytest.raises(TerminalElsewhereError):
        sell(app, "S-1", 1, location="POPUP-1")


def test_stock_adjustments_and_safety_stock_through_the_application(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    app.adjust_stock("TINA-30", "STORE-1", AdjustmentReason.DAMAGE, 2, "broken in storage")
    receipt = app.set_safety_stock("TINA-30", "STORE-1", 3, "policy")
    assert (receipt.levels.on_hand, receipt.levels.available) == (10, 5)
    counted = app.adjust_stock("TINA-30", "STORE-1", AdjustmentReason.COUNT, 9, "COUNT-1")
    assert counted.levels.on_hand == 9

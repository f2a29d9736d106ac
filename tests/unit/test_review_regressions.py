"""Rules found missing in review, each pinned by the smallest case that broke it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import (
    AlreadyExistsError,
    ConflictError,
    InsufficientStockError,
    LocationNotOpenError,
    MembersOnlyError,
    PopupStillHoldsStockError,
)
from domain.online import ReservedLine
from domain.shifts import ZTotal
from domain.stock import StockItem
from domain.values import AdjustmentReason, CampaignKind, LocationKind, Money, PaymentMethod
from services.application import RetailApp
from services.flash import FlashSales
from tests.unit.conftest import Clock


def test_a_campaign_cannot_draw_units_a_count_found_missing() -> None:
    item = StockItem.open("A", "ONLINE")
    item.receive(10, "")
    item.allocate(6, "LIVE")
    item.adjust(AdjustmentReason.COUNT, 2, "count")
    assert item.available_to("LIVE") == 2
    with pytest.raises(InsufficientStockError):
        item.reserve(6, "O-1", campaign="LIVE")


def test_promised_units_cannot_be_marked_damaged_or_lost() -> None:
    item = StockItem.open("A", "ONLINE")
    item.receive(10, "")
    item.reserve(10, "O-1")
    for reason in (AdjustmentReason.DAMAGE, AdjustmentReason.HOLD, AdjustmentReason.SHRINKAGE):
        with pytest.raises(InsufficientStockError):
            item.adjust(reason, 1, "")


def test_a_reservation_cannot_be_confirmed_beyond_what_is_physically_there() -> None:
    item = StockItem.open("A", "ONLINE")
    item.receive(10, "")
    item.reserve(8, "O-1")
    item.adjust(AdjustmentReason.COUNT, 5, "count")  # the count is the truth
    with pytest.raises(InsufficientStockError):
        item.confirm(8, "O-1")


def test_a_cancelled_campaign_reservation_returns_to_the_running_campaign(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 10, "DN")
    app.start_campaign("LIVE", CampaignKind.LIVESTREAM, "ONLINE", {"TINA-30": 2})
    app.reserve("O-1", "", "ONLINE", [ReservedLine("TINA-30", 2)], campaign="LIVE")
    app.cancel_reservation("O-1")
    assert app.stock_levels("TINA-30", "ONLINE").allocated == 2
    app.reserve("O-2", "", "ONLINE", [ReservedLine("TINA-30", 2)], campaign="LIVE")


def test_an_expiry_that_loses_a_race_is_kept_for_the_next_sweep(
    app: RetailApp, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.receive_stock("TINA-30", "ONLINE", 5, "DN")
    app.reserve("O-1", "", "ONLINE", [ReservedLine("TINA-30", 5)], hold=timedelta(seconds=5))
    clock.advance(seconds=10)
    real = app._release

    def contended(order_id: str, *, expired: bool) -> object:
        raise ConflictError("lost the race")

    monkeypatch.setattr(app, "_release", contended)
    with pytest.raises(ConflictError):
        app.expire_due()
    monkeypatch.setattr(app, "_release", real)
    clock.advance(seconds=2)
    assert app.expire_due() == 1
    assert app.stock_levels("TINA-30", "ONLINE").reserved == 0


def test_an_anonymous_flash_buyer_of_a_member_limited_sku_is_refused_alone(app: RetailApp) -> None:
    app.receive_stock("HOURGLASS", "ONLINE", 5, "DN")
    flash = FlashSales(app)
    try:
        with pytest.raises(MembersOnlyError):
            flash.buy("F-0", "HOURGLASS", "ONLINE", "", 1)
        assert flash.buy("F-1", "HOURGLASS", "ONLINE", "M-1", 1).outcome.value == "confirmed"
    finally:
        flash.stop()


def test_a_flash_order_id_reused_for_another_purchase_is_refused(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 5, "DN")
    app.receive_stock("MILO-KEY", "ONLINE", 5, "DN")
    flash = FlashSales(app)
    try:
        flash.buy("F-1", "TINA-30", "ONLINE", "M-1", 1)
        with pytest.raises(AlreadyExistsError):
            flash.buy("F-1", "MILO-KEY", "ONLINE", "M-2", 2)
        with pytest.raises(AlreadyExistsError):
            flash.buy("F-1", "TINA-30", "ONLINE", "M-1", 2)
    finally:
        flash.stop()
    assert app.stock_levels("MILO-KEY", "ONLINE").on_hand == 5


def test_a_popup_with_goods_on_their_way_cannot_close(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "WH-1", 5, "DN")
    app.dispatch_transfer("TR-1", "WH-1", "POPUP-1", {"TINA-30": 5})
    app.start_closing_popup("POPUP-1")
    with pytest.raises(PopupStillHoldsStockError):
        app.close_popup("POPUP-1", {"TINA-30": 0})


def test_a_closed_popups_stock_no_longer_moves(app: RetailApp) -> None:
    app.register_location("POPUP-9", LocationKind.POPUP, "P9", "Xi'an", "Yanta")
    app.receive_stock("TINA-30", "POPUP-9", 1, "DN")
    app.open_popup("POPUP-9")
    app.dispatch_transfer("TR-OUT", "POPUP-9", "WH-1", {"TINA-30": 1})
    app.start_closing_popup("POPUP-9")
    app.close_popup("POPUP-9", {})
    item = app.get_stock_item("TINA-30", "POPUP-9")
    assert item is not None and item.sealed
    with pytest.raises(LocationNotOpenError):
        item.receive(1, "late delivery")  # what a racing receipt would meet on its retry


def test_retries_of_transfer_receipt_shift_close_and_campaign_start_are_answered(
    app: RetailApp,
) -> None:
    app.receive_stock("TINA-30", "WH-1", 5, "DN")
    app.receive_stock("TINA-30", "ONLINE", 5, "DN")
    app.dispatch_transfer("TR-1", "WH-1", "STORE-1", {"TINA-30": 5})
    app.receive_transfer("TR-1", {"TINA-30": 4})
    assert app.receive_transfer("TR-1", {"TINA-30": 4}).lost == {"TINA-30": 1}
    assert app.stock_levels("TINA-30", "STORE-1").on_hand == 4
    app.open_shift("T-1", "SH-1", "STORE-1", "s", Money(0, "CNY"))
    z = [ZTotal(PaymentMethod.CASH, Money(0, "CNY"))]
    app.close_shift("T-1", "SH-1", z, Money(0, "CNY"))
    app.close_shift("T-1", "SH-1", z, Money(0, "CNY"))
    app.start_campaign("LIVE", CampaignKind.LIVESTREAM, "ONLINE", {"TINA-30": 2})
    app.start_campaign("LIVE", CampaignKind.LIVESTREAM, "ONLINE", {"TINA-30": 2})
    assert app.stock_levels("TINA-30", "ONLINE").allocated == 2

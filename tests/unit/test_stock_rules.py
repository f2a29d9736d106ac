from __future__ import annotations

from uuid import uuid4

import pytest

from domain.errors import InsufficientStockError, InvalidValueError
from domain.stock import StockItem
from domain.values import AdjustmentReason
from services.application import RetailApp


def stocked(on_hand: int = 10) -> StockItem:
    item = StockItem.open("SKU-1", "STORE-1")
    if on_hand:
        item.receive(on_hand, "DN-0")
    item.collect_events()
    return item


def test_receiving_adds_to_on_hand_and_records_the_movement() -> None:
    item = StockItem.open("SKU-1", "STORE-1")
    item.receive(10, "DN-1")
    assert item.on_hand == 10
    moved = item.collect_events()[-1]
    assert (moved.sku, moved.location, moved.reason, moved.quantity) == (  # type: ignore[attr-defined]
        "SKU-1", "STORE-1", "received", 10,
    )  # fmt: skip
    assert (moved.reference, moved.on_hand) == ("DN-1", 10)  # type: ignore[attr-defined]


@pytest.mark.parametrize("quantity", [0, -1, -100])
def test_receiving_a_non_positive_quantity_is_refused_and_records_nothing(quantity: int) -> None:
    item = stocked(0)
    with pytest.raises(InvalidValueError) as refused:
        item.receive(quantity, "DN-1")
    assert refused.value.field == "quantity"
    assert item.collect_events() == []
    assert item.on_hand == 0


def test_a_till_sale_may_drive_on_hand_below_zero_and_says_so() -> None:
    item = stocked(2)
    assert item.sell(2, uuid4()) is False
    assert item.sell(1, uuid4()) is True
    assert item.on_hand == -1


def test_available_is_on_hand_less_reserved_safety_stock_unavailable_and_allocations() -> None:
    item = stocked(20)
    item.reserve(3, "O-1")
    item.set_safety_stock(2, "policy")
    item.adjust(AdjustmentReason.DAMAGE, 1, "broken")
    item.allocate(4, "LIVE-1")
    levels = item.levels
    assert (levels.on_hand, levels.reserved, levels.safety_stock, levels.unavailable) == (
        20,
        3,
        2,
        1,
    )
    assert levels.allocated == 4
    assert item.available == 20 - 3 - 2 - 1 - 4 == 10


def test_reserving_more_than_available_is_refused_and_records_nothing() -> None:
    item = stocked(5)
    item.set_safety_stock(1, "policy")
    item.collect_events()
    with pytest.raises(InsufficientStockError) as refused:
        item.reserve(5, "O-1")
    assert refused.value.available == 4
    assert item.collect_events() == []


def test_a_reservation_is_released_or_confirmed() -> None:
    item = stocked(5)
    item.reserve(2, "O-1")
    item.reserve(2, "O-2")
    item.release(2, "O-1")
    item.confirm(2, "O-2")
    assert (item.on_hand, item.reserved, item.available) == (3, 0, 3)


def test_campaign_allocations_are_drawn_only_by_their_campaign() -> None:
    item = stocked(10)
    item.allocate(6, "LIVE-1")
    assert item.available == 4
    with pytest.raises(InsufficientStockError):
        item.reserve(5, "O-general")
    item.reserve(5, "O-live", campaign="LIVE-1")
    with pytest.raises(InsufficientStockError):
        item.reserve(2, "O-live-2", campaign="LIVE-1")
    item.release(5, "O-live", campaign="LIVE-1", campaign_running=True)  # back to the campaign
    assert item.allocations == {"LIVE-1": 6}
    assert item.return_allocation("LIVE-1") == 6
    assert (item.allocations, item.available) == ({}, 10)


def test_a_release_after_the_campaign_ended_goes_to_general_stock() -> None:
    item = stocked(10)
    item.allocate(3, "DROP-1")
    item.reserve(3, "O-1", campaign="DROP-1")
    item.return_allocation("DROP-1")
    item.release(3, "O-1", campaign="DROP-1")
    assert (item.allocations, item.available) == ({}, 10)


@pytest.mark.parametrize(
    ("reason", "quantity", "on_hand", "unavailable"),
    [
        (AdjustmentReason.COUNT, 7, 7, 0),
        (AdjustmentReason.COUNT, 0, 0, 0),
        (AdjustmentReason.DAMAGE, 2, 10, 2),
        (AdjustmentReason.HOLD, 3, 10, 3),
        (AdjustmentReason.SHRINKAGE, 4, 6, 0),
        (AdjustmentReason.FOUND, 5, 15, 0),
    ],
)
def test_adjustments_move_on_hand_and_unavailable(
    reason: AdjustmentReason, quantity: int, on_hand: int, unavailable: int
) -> None:
    item = stocked(10)
    item.adjust(reason, quantity, "COUNT-7")
    assert (item.on_hand, item.unavailable) == (on_hand, unavailable)
    assert item.collect_events()[-1].reason == reason_movement(reason)  # type: ignore[attr-defined]


def reason_movement(reason: AdjustmentReason) -> str:
    from domain.stock import ADJUSTMENT_MOVEMENTS  # noqa: PLC0415

    return ADJUSTMENT_MOVEMENTS[reason].value


def test_damaged_units_are_written_off_or_released_from_hold() -> None:
    item = stocked(10)
    item.adjust(AdjustmentReason.DAMAGE, 3, "")
    item.adjust(AdjustmentReason.WRITE_OFF, 2, "")
    item.adjust(AdjustmentReason.RELEASE_HOLD, 1, "")
    assert (item.on_hand, item.unavailable) == (8, 0)
    with pytest.raises(InvalidValueError):
        item.adjust(AdjustmentReason.WRITE_OFF, 1, "")


def test_shrinkage_beyond_sellable_units_is_refused() -> None:
    with pytest.raises(InsufficientStockError):
        stocked(2).adjust(AdjustmentReason.SHRINKAGE, 3, "")


def test_a_transfer_leaves_the_source_and_arrives_at_the_destination_possibly_short() -> None:
    source, destination = stocked(10), StockItem.open("SKU-1", "POPUP-1")
    source.dispatch(6, "TR-1")
    destination.expect(6, "TR-1")
    assert (source.on_hand, destination.incoming, destination.on_hand) == (4, 6, 0)
    destination.receive_transfer(6, 5, "TR-1")
    assert (destination.incoming, destination.on_hand) == (0, 5)


def test_only_available_units_can_be_dispatched() -> None:
    item = stocked(5)
    item.reserve(3, "O-1")
    with pytest.raises(InsufficientStockError):
        item.dispatch(3, "TR-1")


def test_returned_goods_go_back_on_hand_and_damaged_ones_stay_unavailable() -> None:
    item = stocked(5)
    sale = uuid4()
    item.sell(3, sale)
    item.take_back(1, sale, damaged=False)
    item.take_back(1, sale, damaged=True)
    assert (item.on_hand, item.unavailable, item.available) == (4, 1, 3)


def test_invalid_codes_are_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidValueError) as refused:
        StockItem.open("bad sku with spaces", "STORE-1")
    assert refused.value.field == "sku"


def test_the_same_sku_and_location_always_name_the_same_stream() -> None:
    assert StockItem.create_id("A", "B") == StockItem.create_id("A", "B")
    assert StockItem.create_id("A", "B") != StockItem.create_id("B", "A")
    assert StockItem.open("A", "B").id == StockItem.create_id("A", "B")


def test_a_read_aggregate_changed_but_not_saved_leaves_the_next_read_as_stored(
    app: RetailApp,
) -> None:
    # Aggregates copy themselves for the repository's cache (FlatCopy): a change that is
    # never saved, such as one refused halfway through a command, must not leak into it.
    app.receive_stock("TINA-30", "STORE-1", 5, "DN-1")
    item = app.get_stock_item("TINA-30", "STORE-1")
    assert item is not None
    item.receive(3, "NEVER-SAVED")
    item.allocations["LEAK"] = 1
    place = app.get_location("STORE-1")
    place.stocked.append("LEAK")
    again = app.get_stock_item("TINA-30", "STORE-1")
    assert again is not None
    assert (again.on_hand, again.allocations) == (5, {})
    assert "LEAK" not in app.get_location("STORE-1").stocked

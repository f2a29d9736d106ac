from __future__ import annotations

from uuid import uuid4

import pytest

from domain.errors import InvalidValueError
from domain.stock import StockItem


def test_receiving_adds_to_on_hand_and_records_the_movement() -> None:
    item = StockItem.open("SKU-1", "STORE-1")
    item.receive(10, "DN-1")
    assert item.on_hand == 10
    received = item.collect_events()[-1]
    assert (received.sku, received.location, received.quantity) == ("SKU-1", "STORE-1", 10)  # type: ignore[attr-defined]
    assert received.on_hand_after == 10  # type: ignore[attr-defined]


@pytest.mark.parametrize("quantity", [0, -1, -100])
def test_receiving_a_non_positive_quantity_is_refused_and_records_nothing(quantity: int) -> None:
    item = StockItem.open("SKU-1", "STORE-1")
    item.collect_events()
    with pytest.raises(InvalidValueError) as refused:
        item.receive(quantity, "DN-1")
    assert refused.value.field == "quantity"
    assert item.collect_events() == []
    assert item.on_hand == 0


def test_a_till_sale_may_drive_on_hand_below_zero_and_says_so() -> None:
    item = StockItem.open("SKU-1", "STORE-1")
    item.receive(2, "")
    assert item.sell(2, uuid4()) is False
    assert item.sell(1, uuid4()) is True
    assert item.on_hand == -1


def test_selling_nothing_is_refused() -> None:
    item = StockItem.open("SKU-1", "STORE-1")
    with pytest.raises(InvalidValueError):
        item.sell(0, uuid4())


def test_invalid_codes_are_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidValueError) as refused:
        StockItem.open("bad sku with spaces", "STORE-1")
    assert refused.value.field == "sku"


def test_the_same_sku_and_location_always_name_the_same_stream() -> None:
    assert StockItem.create_id("A", "B") == StockItem.create_id("A", "B")
    assert StockItem.create_id("A", "B") != StockItem.create_id("B", "A")
    assert StockItem.open("A", "B").id == StockItem.create_id("A", "B")

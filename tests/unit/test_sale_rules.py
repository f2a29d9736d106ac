from __future__ import annotations

import pytest

from domain.errors import (
    CurrencyMismatchError,
    InvalidValueError,
    PaymentsDoNotAddUpError,
)
from domain.sales import Payment, SaleLine, check_sale
from domain.values import Money, PaymentMethod


def cny(amount: int) -> Money:
    return Money(amount, "CNY")


def line(sku: str = "SKU-1", quantity: int = 1, price: int = 1000, discount: int = 0) -> SaleLine:
    return SaleLine(sku, quantity, cny(price), cny(discount))


def test_a_sale_totals_its_lines_after_discounts() -> None:
    total = check_sale([line(quantity=3, price=1000, discount=500), line("SKU-2", 1, 250)], [])
    assert total == cny(2750)


def test_a_sale_without_lines_is_refused() -> None:
    with pytest.raises(InvalidValueError) as refused:
        check_sale([], [])
    assert refused.value.field == "lines"


def test_a_line_with_a_non_positive_quantity_names_the_line() -> None:
    with pytest.raises(InvalidValueError) as refused:
        check_sale([line(), line(quantity=0)], [])
    assert refused.value.field == "lines[1].quantity"


@pytest.mark.parametrize("discount", [-1, 3001])
def test_a_discount_outside_the_lines_gross_is_refused(discount: int) -> None:
    with pytest.raises(InvalidValueError) as refused:
        check_sale([line(quantity=3, price=1000, discount=discount)], [])
    assert refused.value.field == "lines[0].discount"


def test_payments_must_add_up_to_the_total() -> None:
    with pytest.raises(PaymentsDoNotAddUpError):
        check_sale([line(price=1000)], [Payment(PaymentMethod.CASH, cny(900))])
    total = check_sale(
        [line(price=1000)],
        [Payment(PaymentMethod.CASH, cny(400)), Payment(PaymentMethod.ALIPAY, cny(600))],
    )
    assert total == cny(1000)


def test_lines_in_different_currencies_are_refused() -> None:
    with pytest.raises(CurrencyMismatchError):
        check_sale([line(), SaleLine("SKU-2", 1, Money(100, "EUR"), Money(0, "EUR"))], [])


def test_money_refuses_a_currency_that_is_not_iso_4217() -> None:
    with pytest.raises(InvalidValueError):
        Money(1, "yuan")

"""A sale rung up at a POS terminal, identified by the terminal and the terminal's own sale id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidValueError, PaymentsDoNotAddUpError, SaleIdReusedError
from domain.ids import stream_id
from domain.values import Money, PaymentMethod, require_code, require_positive

# Stable topic of the stored event: part of the data, never renamed.
SALE_RECORDED = "retail.PosSale.Recorded"


@dataclass(frozen=True, slots=True)
class SaleLine:
    sku: str
    quantity: int
    unit_price: Money
    discount: Money

    @property
    def total(self) -> Money:
        return self.unit_price.times(self.quantity).minus(self.discount)


@dataclass(frozen=True, slots=True)
class Payment:
    method: PaymentMethod
    amount: Money


def sale_total(lines: list[SaleLine]) -> Money:
    total = Money.zero(lines[0].unit_price.currency)
    for index, line in enumerate(lines):
        total = total.plus(line.total, field=f"lines[{index}].unit_price")
    return total


def check_sale(lines: list[SaleLine], payments: list[Payment]) -> Money:
    """Validates a sale's lines and payments and answers its total."""
    if not lines:
        raise InvalidValueError("lines", "a sale needs at least one line")
    for index, line in enumerate(lines):
        require_code(f"lines[{index}].sku", line.sku)
        require_positive(f"lines[{index}].quantity", line.quantity)
        if line.unit_price.minor_units < 0:
            raise InvalidValueError(f"lines[{index}].unit_price", "must not be negative")
        gross = line.unit_price.times(line.quantity)
        discount = line.discount.minor_units
        if discount < 0 or discount > gross.minor_units:
            raise InvalidValueError(
                f"lines[{index}].discount",
                f"must be between 0 and the line's gross {gross.minor_units}, got {discount}",
            )
        gross.minus(line.discount, field=f"lines[{index}].discount")
    total = sale_total(lines)
    if payments:
        paid = Money.zero(total.currency)
        for index, payment in enumerate(payments):
            if payment.amount.minor_units <= 0:
                raise InvalidValueError(f"payments[{index}].amount", "must be positive")
            paid = paid.plus(payment.amount, field=f"payments[{index}].amount")
        if paid != total:
            raise PaymentsDoNotAddUpError(total.minor_units, paid.minor_units, total.currency)
    return total


class PosSale(Aggregate):
    """A till sale. Its id is derived from (terminal, client sale id), so a retry finds it."""

    TOPIC = "retail.PosSale"

    class Created(Aggregate.Created):
        TOPIC = "retail.PosSale.Created"

    @staticmethod
    def create_id(terminal: str, client_sale_id: str) -> UUID:
        return stream_id("pos-sale", terminal, client_sale_id)

    @event("Recorded", topic=SALE_RECORDED)
    def __init__(
        self,
        terminal: str,
        client_sale_id: str,
        location: str,
        staff: str,
        occurred_at: datetime,
        lines: list[SaleLine],
        payments: list[Payment],
        negative_stock_skus: list[str],
    ) -> None:
        self.terminal = terminal
        self.client_sale_id = client_sale_id
        self.location = location
        self.staff = staff
        self.occurred_at = occurred_at
        self.lines = list(lines)
        self.payments = list(payments)
        self.negative_stock_skus = list(negative_stock_skus)

    @property
    def total(self) -> Money:
        return sale_total(self.lines)

    def check_is_retry_of(
        self, location: str, lines: list[SaleLine], payments: list[Payment]
    ) -> None:
        """A retry must repeat the original sale; different contents under a used id are refused."""
        if (self.location, self.lines, self.payments) != (location, lines, payments):
            raise SaleIdReusedError(self.terminal, self.client_sale_id)

"""A sale rung up at a POS terminal, identified by the terminal and the terminal's own sale id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    InvalidValueError,
    PaymentsDoNotAddUpError,
    ReturnExceedsSaleError,
    SaleIdReusedError,
)
from domain.ids import stream_id
from domain.values import Money, PaymentMethod, require_code, require_positive

# Stable topics of the stored events: part of the data, never renamed.
SALE_RECORDED = "retail.PosSale.Recorded"
SALE_RETURNED = "retail.PosSale.Returned"

# A sale posted this long after it happened was rung up offline: it is flagged as late.
LATE_AFTER = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SaleLine:
    sku: str
    quantity: int
    unit_price: Money
    discount: Money
    # VAT included in the price, in basis points, as the SKU had it when sold.
    tax_rate_bp: int = 0

    @property
    def total(self) -> Money:
        return self.unit_price.times(self.quantity).minus(self.discount)


@dataclass(frozen=True, slots=True)
class Payment:
    method: PaymentMethod
    amount: Money
    # The payment provider's transaction reference (empty for cash), matched at settlement.
    reference: str = ""


@dataclass(frozen=True, slots=True)
class ReturnLine:
    sku: str
    quantity: int
    refund: Money
    tax_rate_bp: int = 0


@dataclass(frozen=True, slots=True)
class SaleFlags:
    """What a sale tells the store and finance beyond its lines."""

    shift_id: str = ""
    late: bool = False  # rung up offline, posted later
    after_shift_close: bool = False  # happened in a shift that had closed when it was posted


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
    check_paid("payments", payments, total)
    return total


def check_paid(field: str, payments: list[Payment], total: Money) -> None:
    """Payments (or refunds), when given, are positive and add up to the total exactly."""
    if not payments:
        return
    paid = Money.zero(total.currency)
    for index, payment in enumerate(payments):
        if payment.amount.minor_units <= 0:
            raise InvalidValueError(f"{field}[{index}].amount", "must be positive")
        paid = paid.plus(payment.amount, field=f"{field}[{index}].amount")
    if paid != total:
        raise PaymentsDoNotAddUpError(total.minor_units, paid.minor_units, total.currency)


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
        shift_id: str,
        late: bool,
        after_shift_close: bool,
    ) -> None:
        self.terminal = terminal
        self.client_sale_id = client_sale_id
        self.location = location
        self.staff = staff
        self.occurred_at = occurred_at
        self.lines = list(lines)
        self.payments = list(payments)
        self.negative_stock_skus = list(negative_stock_skus)
        self.flags = SaleFlags(shift_id, late, after_shift_close)
        self.returns: dict[str, list[ReturnLine]] = {}

    @property
    def returned(self) -> dict[str, int]:
        units: dict[str, int] = {}
        for lines in self.returns.values():
            for line in lines:
                units[line.sku] = units.get(line.sku, 0) + line.quantity
        return units

    def sold(self) -> dict[str, tuple[int, Money]]:
        """Units and net amount sold per SKU."""
        sold: dict[str, tuple[int, Money]] = {}
        for line in self.lines:
            units, net = sold.get(line.sku, (0, Money.zero(line.total.currency)))
            sold[line.sku] = (units + line.quantity, net.plus(line.total))
        return sold

    def return_goods(
        self,
        return_id: str,
        items: dict[str, int],
        refunds: list[Payment],
        *,
        damaged: bool,
        occurred_at: datetime,
        shift_id: str = "",
    ) -> list[ReturnLine]:
        """Takes back some or all of what was sold; the refund is each SKU's net price share.

        Refunds telescope: returning every unit, in any number of returns, refunds exactly the
        net amount paid, to the fen.
        """
        require_code("return_id", return_id)
        if not items:
            raise InvalidValueError("lines", "a return needs at least one line")
        sold, returned = self.sold(), self.returned
        lines = []
        for sku, quantity in sorted(items.items()):
            require_positive(f"lines[{sku}].quantity", quantity)
            units, net = sold.get(sku, (0, Money.zero(self.total.currency)))
            before = returned.get(sku, 0)
            if quantity > units - before:
                raise ReturnExceedsSaleError(sku, units - before, quantity)
            after = before + quantity
            refund = net.minor_units * after // units - net.minor_units * before // units
            rate = next((line.tax_rate_bp for line in self.lines if line.sku == sku), 0)
            lines.append(ReturnLine(sku, quantity, Money(refund, net.currency), rate))
        total = Money.zero(self.total.currency)
        for line in lines:
            total = total.plus(line.refund)
        check_paid("refunds", refunds, total)
        self._returned(
            terminal=self.terminal,
            client_sale_id=self.client_sale_id,
            location=self.location,
            return_id=return_id,
            lines=lines,
            refunds=list(refunds),
            damaged=damaged,
            occurred_at=occurred_at,
            shift_id=shift_id,
        )
        return lines

    @event("Returned", topic=SALE_RETURNED)
    def _returned(
        self,
        terminal: str,
        client_sale_id: str,
        location: str,
        return_id: str,
        lines: list[ReturnLine],
        refunds: list[Payment],
        damaged: bool,
        occurred_at: datetime,
        shift_id: str,
    ) -> None:
        self.returns[return_id] = list(lines)

    @property
    def total(self) -> Money:
        return sale_total(self.lines)

    def check_is_retry_of(
        self, location: str, lines: list[SaleLine], payments: list[Payment]
    ) -> None:
        """A retry must repeat the original sale; different contents under a used id are refused."""
        if (self.location, self.lines, self.payments) != (location, lines, payments):
            raise SaleIdReusedError(self.terminal, self.client_sale_id)

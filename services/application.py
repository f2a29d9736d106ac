"""The write side's use cases: primitives and value objects in, receipts with positions out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder

from domain.catalog import Location, Sku
from domain.errors import (
    ConflictError,
    InvalidValueError,
    NotASellingLocationError,
    UnknownLocationError,
    UnknownSkuError,
)
from domain.sales import Payment, PosSale, SaleLine, check_sale
from domain.stock import StockItem
from domain.values import LocationKind, Money, require_code
from services.transcodings import register_domain_transcodings

T = TypeVar("T")
A = TypeVar("A", bound=Aggregate)

# A command that lost an optimistic-concurrency race is retried this many times before the
# caller is told to retry (ABORTED).
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class StockReceipt:
    sku: str
    location: str
    on_hand: int
    position: int


@dataclass(frozen=True)
class SaleLineInput:
    """A line as the terminal sent it; prices left out mean the SKU's list price."""

    sku: str
    quantity: int
    unit_price: Money | None = None
    discount: Money | None = None


@dataclass(frozen=True)
class SaleReceipt:
    sale_id: UUID
    terminal: str
    client_sale_id: str
    location: str
    lines: list[SaleLine]
    total: Money
    occurred_at: datetime
    recorded_at: datetime
    position: int
    replayed: bool
    negative_stock_skus: list[str]


class RetailApp(Application[UUID]):
    """The write side: catalogue, stock per SKU and location, and POS sales in one sequence."""

    name = "Retail"
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "20000",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
    }

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        # Set after every save, so the relay wakes without polling the event store.
        self.new_events = threading.Event()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_domain_transcodings(transcoder)

    # Catalogue

    def register_sku(self, code: str, name: str, series: str, list_price: Money) -> tuple[Sku, int]:
        """Registers a SKU; repeating an identical registration answers the existing one."""
        sku = Sku.register(code, name, series, list_price)
        existing = self._find(Sku, sku.id)
        if existing is not None:
            existing.check_same_as(name, series, list_price)
            return existing, 0
        return sku, self._save_or_retry(
            sku, lambda: self.register_sku(code, name, series, list_price)
        )

    def register_location(
        self, code: str, kind: LocationKind, name: str, city: str, district: str
    ) -> tuple[Location, int]:
        location = Location.register(code, kind, name, city, district)
        existing = self._find(Location, location.id)
        if existing is not None:
            existing.check_same_as(kind, name, city, district)
            return existing, 0
        return location, self._save_or_retry(
            location, lambda: self.register_location(code, kind, name, city, district)
        )

    def get_sku(self, code: str) -> Sku:
        sku = self._find(Sku, Sku.create_id(require_code("sku", code)))
        if sku is None:
            raise UnknownSkuError(code)
        return sku

    def get_location(self, code: str) -> Location:
        location = self._find(Location, Location.create_id(require_code("location", code)))
        if location is None:
            raise UnknownLocationError(code)
        return location

    # Stock

    def receive_stock(self, sku: str, location: str, quantity: int, reference: str) -> StockReceipt:
        """Books goods received at a location."""
        self.get_sku(sku)
        self.get_location(location)

        def attempt() -> StockReceipt:
            item = self._stock_item(sku, location)
            item.receive(quantity, reference)
            position = self._save(item)
            return StockReceipt(sku, location, item.on_hand, position)

        return self._with_retries(attempt)

    def get_stock_item(self, sku: str, location: str) -> StockItem | None:
        return self._find(StockItem, StockItem.create_id(sku, location))

    # POS

    def record_sale(
        self,
        terminal: str,
        client_sale_id: str,
        location: str,
        staff: str,
        occurred_at: datetime | None,
        lines: list[SaleLineInput],
        payments: list[Payment],
    ) -> SaleReceipt:
        """Records a till sale once; a retry answers the first receipt and writes nothing."""
        require_code("terminal_id", terminal)
        require_code("client_sale_id", client_sale_id)
        place = self.get_location(location)
        if not place.kind.sells_at_till:
            raise NotASellingLocationError(location, place.kind.value)
        if occurred_at is not None and occurred_at.tzinfo is None:
            raise InvalidValueError("occurred_at", "must carry a timezone")
        priced = self._price_lines(lines)
        check_sale(priced, payments)
        sale_id = PosSale.create_id(terminal, client_sale_id)

        def attempt() -> SaleReceipt:
            existing = self._find(PosSale, sale_id)
            if existing is not None:
                existing.check_is_retry_of(location, priced, payments)
                # The first position is not kept with the sale; the current head is at or after
                # it, so waiting for it still gives read-your-writes.
                head = self.recorder.max_notification_id() or 0
                return self._receipt(existing, head, replayed=True)
            items: dict[str, StockItem] = {}
            negative: list[str] = []
            for line in priced:
                item = items.get(line.sku) or self._stock_item(line.sku, location)
                items[line.sku] = item
                if item.sell(line.quantity, sale_id) and line.sku not in negative:
                    negative.append(line.sku)
            sale = PosSale(
                terminal=terminal,
                client_sale_id=client_sale_id,
                location=location,
                staff=staff.strip(),
                occurred_at=occurred_at or datetime.now(UTC),
                lines=priced,
                payments=payments,
                negative_stock_skus=negative,
            )
            position = self._save(sale, *items.values())
            return self._receipt(sale, position, replayed=False)

        return self._with_retries(attempt)

    # Helpers

    def _price_lines(self, lines: list[SaleLineInput]) -> list[SaleLine]:
        priced = []
        for index, line in enumerate(lines):
            require_code(f"lines[{index}].sku", line.sku)
            sku = self._find(Sku, Sku.create_id(line.sku))
            if sku is None:
                raise UnknownSkuError(line.sku)
            price = line.unit_price or sku.list_price
            priced.append(
                SaleLine(
                    line.sku, line.quantity, price, line.discount or Money.zero(price.currency)
                )
            )
        return priced

    @staticmethod
    def _receipt(sale: PosSale, position: int, *, replayed: bool) -> SaleReceipt:
        return SaleReceipt(
            sale_id=sale.id,
            terminal=sale.terminal,
            client_sale_id=sale.client_sale_id,
            location=sale.location,
            lines=list(sale.lines),
            total=sale.total,
            occurred_at=sale.occurred_at,
            recorded_at=sale.created_on,
            position=position,
            replayed=replayed,
            negative_stock_skus=list(sale.negative_stock_skus),
        )

    def _stock_item(self, sku: str, location: str) -> StockItem:
        item = self._find(StockItem, StockItem.create_id(sku, location))
        return item if item is not None else StockItem.open(sku, location)

    def _find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        if not isinstance(aggregate, cls):
            raise TypeError(f"{aggregate_id} is a {type(aggregate).__name__}, not a {cls.__name__}")
        return aggregate

    def _save(self, *aggregates: Aggregate) -> int:
        recordings = self.save(*aggregates)
        self.new_events.set()
        return max(r.notification.id for r in recordings)

    def _save_or_retry(self, aggregate: Aggregate, again: Callable[[], tuple[Any, int]]) -> int:
        """Saves a new aggregate; when a concurrent writer created it first, answer as a repeat."""
        try:
            return self._save(aggregate)
        except IntegrityError:
            return again()[1]

    @staticmethod
    def _with_retries(attempt: Callable[[], T]) -> T:
        for _ in range(MAX_ATTEMPTS):
            try:
                return attempt()
            except IntegrityError:
                continue
        raise ConflictError("too many concurrent writes to the same stock; retry the command")

"""Stock of one SKU at one location: the consistency boundary that decides every movement.

Quantities: on hand, reserved (held for online orders), safety stock, unavailable (damaged or on
quality hold, still on hand), incoming (dispatched to here, in transit) and allocations (units
set aside per campaign). Available to anyone outside a campaign is
on hand - reserved - safety stock - unavailable - allocated.

Every movement is one `Moved` event carrying its reason, quantity, reference and the levels
after it, so each event reads on its own (on Kafka too) and a reader sets rather than adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InsufficientStockError, InvalidValueError, LocationNotOpenError
from domain.ids import FlatCopy, stream_id
from domain.values import (
    AdjustmentReason,
    require_code,
    require_non_negative,
    require_positive,
)

# Stable topics of the stored events: part of the data, never renamed.
STOCK_OPENED = "retail.StockItem.Opened"
STOCK_MOVED = "retail.StockItem.Moved"
STOCK_SEALED = "retail.StockItem.Sealed"


class Movement(StrEnum):
    """The reason of a stock movement."""

    RECEIVED = "received"
    SOLD = "sold"  # at a till
    RETURNED = "returned"
    RETURNED_DAMAGED = "returned_damaged"
    COUNTED = "counted"
    DAMAGED = "damaged"
    SHRINKAGE = "shrinkage"
    FOUND = "found"
    WRITTEN_OFF = "written_off"
    HELD = "held"
    HOLD_RELEASED = "hold_released"
    SAFETY_STOCK_SET = "safety_stock_set"
    TRANSFERRED_OUT = "transferred_out"
    INCOMING = "incoming"
    TRANSFERRED_IN = "transferred_in"
    ALLOCATED = "allocated"
    ALLOCATION_RETURNED = "allocation_returned"
    RESERVED = "reserved"
    RELEASED = "released"
    CONFIRMED = "confirmed"  # a reservation paid: the units leave
    SOLD_ONLINE = "sold_online"  # a flash-sale purchase: reserved and confirmed at once


ADJUSTMENT_MOVEMENTS = {
    AdjustmentReason.COUNT: Movement.COUNTED,
    AdjustmentReason.DAMAGE: Movement.DAMAGED,
    AdjustmentReason.SHRINKAGE: Movement.SHRINKAGE,
    AdjustmentReason.FOUND: Movement.FOUND,
    AdjustmentReason.WRITE_OFF: Movement.WRITTEN_OFF,
    AdjustmentReason.HOLD: Movement.HELD,
    AdjustmentReason.RELEASE_HOLD: Movement.HOLD_RELEASED,
}


@dataclass(frozen=True)
class Levels:
    on_hand: int
    reserved: int
    safety_stock: int
    unavailable: int
    incoming: int
    allocated: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.safety_stock - self.unavailable - self.allocated


class StockItem(FlatCopy, Aggregate):
    """The stock of one SKU at one location, changed only by the movements recorded here."""

    TOPIC = "retail.StockItem"

    class Created(Aggregate.Created):
        TOPIC = "retail.StockItem.Created"

    @staticmethod
    def create_id(sku: str, location: str) -> UUID:
        return stream_id("stock", sku, location)

    @classmethod
    def open(cls, sku: str, location: str) -> StockItem:
        return cls(sku=require_code("sku", sku), location=require_code("location", location))

    @event("Opened", topic=STOCK_OPENED)
    def __init__(self, sku: str, location: str) -> None:
        self.sku = sku
        self.location = location
        self.on_hand = 0
        self.reserved = 0
        self.safety_stock = 0
        self.unavailable = 0
        self.incoming = 0
        self.allocations: dict[str, int] = {}
        self.sealed = False

    # Levels

    @property
    def allocated(self) -> int:
        return sum(self.allocations.values())

    @property
    def levels(self) -> Levels:
        return Levels(
            self.on_hand, self.reserved, self.safety_stock, self.unavailable, self.incoming,
            self.allocated,
        )  # fmt: skip

    @property
    def available(self) -> int:
        return self.levels.available

    def available_to(self, campaign: str) -> int:
        """What a reservation may take: general availability, or the campaign's allocation as
        far as the units are still physically there (a count or shrinkage may have taken them)."""
        if not campaign:
            return max(self.available, 0)
        allocation = self.allocations.get(campaign, 0)
        return max(min(allocation, self.available + allocation), 0)

    @property
    def unpromised(self) -> int:
        """Units on hand, sellable, and neither reserved nor set aside for a campaign."""
        return self.on_hand - self.unavailable - self.reserved - self.allocated

    def _require_available(self, quantity: int, campaign: str = "") -> None:
        available = self.available_to(campaign)
        if quantity > available:
            raise InsufficientStockError(self.sku, self.location, quantity, available)

    # Receipts and till sales

    def receive(self, quantity: int, reference: str) -> None:
        """Books goods that arrived; the reference (a delivery note) is kept with the movement."""
        self._move(Movement.RECEIVED, require_positive("quantity", quantity), reference,
                   on_hand=quantity)  # fmt: skip

    def sell(self, quantity: int, sale_id: UUID) -> bool:
        """Books goods handed over at a till. A sale is a fact, so it may drive on hand below
        zero; the return value says whether it did, for the sale to be flagged."""
        require_positive("quantity", quantity)
        self._move(Movement.SOLD, quantity, str(sale_id), on_hand=-quantity)
        return self.on_hand < 0

    def take_back(self, quantity: int, sale_id: UUID, *, damaged: bool) -> None:
        """Goods returned at a till go back on hand; damaged ones are kept unavailable."""
        require_positive("quantity", quantity)
        if damaged:
            self._move(Movement.RETURNED_DAMAGED, quantity, str(sale_id), on_hand=quantity,
                       unavailable=quantity)  # fmt: skip
        else:
            self._move(Movement.RETURNED, quantity, str(sale_id), on_hand=quantity)

    # Adjustments

    def adjust(self, reason: AdjustmentReason, quantity: int, reference: str) -> None:
        """A count sets on hand to `quantity`; the other reasons move `quantity` units."""
        movement = ADJUSTMENT_MOVEMENTS[reason]
        if reason is AdjustmentReason.COUNT:
            require_non_negative("quantity", quantity)
            delta = quantity - self.on_hand
            self._move(movement, quantity, reference, on_hand=delta)
            return
        require_positive("quantity", quantity)
        # Units promised to a reservation or a campaign cannot be marked damaged or written off
        # as missing: cancel or end those first, or record what a count found.
        free = max(self.unpromised, 0)
        if reason in (AdjustmentReason.DAMAGE, AdjustmentReason.HOLD):
            if quantity > free:
                raise InsufficientStockError(self.sku, self.location, quantity, free)
            self._move(movement, quantity, reference, unavailable=quantity)
        elif reason is AdjustmentReason.SHRINKAGE:
            if quantity > free:
                raise InsufficientStockError(self.sku, self.location, quantity, free)
            self._move(movement, quantity, reference, on_hand=-quantity)
        elif reason is AdjustmentReason.FOUND:
            self._move(movement, quantity, reference, on_hand=quantity)
        else:  # write-off and hold release act on unavailable units only
            if quantity > self.unavailable:
                raise InvalidValueError(
                    "quantity", f"only {self.unavailable} units are unavailable, got {quantity}"
                )
            on_hand = -quantity if reason is AdjustmentReason.WRITE_OFF else 0
            self._move(movement, quantity, reference, on_hand=on_hand, unavailable=-quantity)

    def set_safety_stock(self, quantity: int, reference: str) -> None:
        require_non_negative("safety_stock", quantity)
        self._move(Movement.SAFETY_STOCK_SET, quantity, reference,
                   safety_stock=quantity - self.safety_stock)  # fmt: skip

    # Transfers

    def dispatch(self, quantity: int, transfer: str) -> None:
        """Goods leave for another location; only available units can go."""
        require_positive("quantity", quantity)
        self._require_available(quantity)
        self._move(Movement.TRANSFERRED_OUT, quantity, transfer, on_hand=-quantity)

    def expect(self, quantity: int, transfer: str) -> None:
        """Goods dispatched to here: incoming until they are received."""
        require_positive("quantity", quantity)
        self._move(Movement.INCOMING, quantity, transfer, incoming=quantity)

    def receive_transfer(self, sent: int, received: int, transfer: str) -> None:
        """Of `sent` units in transit, `received` arrived; the rest was lost in transit."""
        require_non_negative("received", received)
        self._move(Movement.TRANSFERRED_IN, received, transfer, on_hand=received, incoming=-sent)

    # Campaign allocations and online reservations

    def allocate(self, quantity: int, campaign: str) -> None:
        """Sets units aside for one campaign: only its reservations draw on them."""
        require_positive("quantity", quantity)
        self._require_available(quantity)
        self._move(Movement.ALLOCATED, quantity, campaign, campaign=campaign, allocation=quantity)

    def return_allocation(self, campaign: str) -> int:
        """What is left of a campaign's allocation returns to general stock."""
        left = self.allocations.get(campaign, 0)
        if left:
            self._move(Movement.ALLOCATION_RETURNED, left, campaign, campaign=campaign,
                       allocation=-left)  # fmt: skip
        return left

    def reserve(self, quantity: int, order: str, campaign: str = "") -> None:
        require_positive("quantity", quantity)
        self._require_available(quantity, campaign)
        self._move(Movement.RESERVED, quantity, order, reserved=quantity, campaign=campaign,
                   allocation=-quantity if campaign else 0)  # fmt: skip

    def release(
        self, quantity: int, order: str, campaign: str = "", *, campaign_running: bool = False
    ) -> None:
        """A reservation cancelled or expired: units return to the campaign while it runs,
        else to general stock."""
        require_positive("quantity", quantity)
        back_to_campaign = bool(campaign) and campaign_running
        self._move(Movement.RELEASED, quantity, order, reserved=-quantity,
                   campaign=campaign if back_to_campaign else "",
                   allocation=quantity if back_to_campaign else 0)  # fmt: skip

    def confirm(self, quantity: int, order: str) -> None:
        """A reservation paid: the units leave stock. They must still be physically here (a
        count may have found fewer than were reserved): confirmed units never exceed stock."""
        require_positive("quantity", quantity)
        present = self.on_hand - self.unavailable
        if quantity > present:
            raise InsufficientStockError(self.sku, self.location, quantity, max(present, 0))
        self._move(Movement.CONFIRMED, quantity, order, on_hand=-quantity, reserved=-quantity)

    def sell_online(self, quantity: int, order: str, campaign: str = "") -> None:
        """A flash-sale purchase: taken from availability and confirmed in one movement."""
        require_positive("quantity", quantity)
        self._require_available(quantity, campaign)
        self._move(Movement.SOLD_ONLINE, quantity, order, on_hand=-quantity, campaign=campaign,
                   allocation=-quantity if campaign else 0)  # fmt: skip

    # The one event

    def _move(
        self,
        movement: Movement,
        quantity: int,
        reference: str,
        *,
        on_hand: int = 0,
        reserved: int = 0,
        safety_stock: int = 0,
        unavailable: int = 0,
        incoming: int = 0,
        campaign: str = "",
        allocation: int = 0,
    ) -> None:
        # A closed pop-up's stock moves no more; goods already handed over at its till are
        # still a fact and are recorded.
        if self.sealed and movement is not Movement.SOLD:
            raise LocationNotOpenError(self.location, "closed", "move stock")
        allocations = dict(self.allocations)
        if campaign and allocation:
            left = allocations.get(campaign, 0) + allocation
            if left:
                allocations[campaign] = left
            else:
                allocations.pop(campaign, None)
        self._moved(
            sku=self.sku,
            location=self.location,
            reason=movement.value,
            quantity=quantity,
            reference=reference,
            campaign=campaign,
            on_hand=self.on_hand + on_hand,
            reserved=self.reserved + reserved,
            safety_stock=self.safety_stock + safety_stock,
            unavailable=self.unavailable + unavailable,
            incoming=self.incoming + incoming,
            allocations=allocations,
        )

    def seal(self) -> None:
        """The location closed for good: no movement but a late till sale is taken any more."""
        if not self.sealed:
            self._sealed(sku=self.sku, location=self.location)

    @event("Sealed", topic=STOCK_SEALED)
    def _sealed(self, sku: str, location: str) -> None:
        self.sealed = True

    # The decorated body runs again on every replay: a pure state change, no checks.
    @event("Moved", topic=STOCK_MOVED)
    def _moved(
        self,
        sku: str,
        location: str,
        reason: str,
        quantity: int,
        reference: str,
        campaign: str,
        on_hand: int,
        reserved: int,
        safety_stock: int,
        unavailable: int,
        incoming: int,
        allocations: dict[str, int],
    ) -> None:
        self.on_hand = on_hand
        self.reserved = reserved
        self.safety_stock = safety_stock
        self.unavailable = unavailable
        self.incoming = incoming
        self.allocations = dict(allocations)

"""Stock of one SKU at one location: the consistency boundary that decides every movement."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import stream_id
from domain.values import require_code, require_positive, require_text

# Stable topics of the stored events: part of the data, never renamed.
STOCK_OPENED = "retail.StockItem.Opened"
STOCK_RECEIVED = "retail.StockItem.Received"
STOCK_SOLD = "retail.StockItem.Sold"


class StockItem(Aggregate):
    """On hand of one SKU at one location, changed only by the movements recorded here."""

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

    def receive(self, quantity: int, reference: str) -> None:
        """Books goods that arrived; the reference (a delivery note) is kept with the movement."""
        require_positive("quantity", quantity)
        reference = require_text("reference", reference) if reference.strip() else ""
        self._received(
            sku=self.sku,
            location=self.location,
            quantity=quantity,
            reference=reference,
            on_hand_after=self.on_hand + quantity,
        )

    def sell(self, quantity: int, sale_id: UUID) -> bool:
        """Books goods handed over at a till. A sale is a fact, so it may drive on hand below
        zero; the return value says whether it did, for the sale to be flagged."""
        require_positive("quantity", quantity)
        on_hand_after = self.on_hand - quantity
        self._sold(
            sku=self.sku,
            location=self.location,
            quantity=quantity,
            sale_id=sale_id,
            on_hand_after=on_hand_after,
        )
        return on_hand_after < 0

    # The decorated bodies run again on every replay: pure state changes, no checks. Every
    # movement names its SKU and location so it reads on its own, on Kafka too.

    @event("Received", topic=STOCK_RECEIVED)
    def _received(
        self, sku: str, location: str, quantity: int, reference: str, on_hand_after: int
    ) -> None:
        self.on_hand = on_hand_after

    @event("Sold", topic=STOCK_SOLD)
    def _sold(
        self, sku: str, location: str, quantity: int, sale_id: UUID, on_hand_after: int
    ) -> None:
        self.on_hand = on_hand_after

"""Invariants over random interleavings of receipts, sales and retries."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from domain.values import LocationKind, Money
from services.application import RetailApp, SaleLineInput

SKUS = ("A-1", "B-2")
LOCATIONS = ("STORE-1", "POPUP-1")


class StockLedger(RuleBasedStateMachine):
    """The write side against a model: on hand is always the sum of the movements recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.app = RetailApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        for sku in SKUS:
            self.app.register_sku(sku, sku, "", Money(100, "CNY"))
        self.app.register_location("STORE-1", LocationKind.PARTNER_STORE, "S", "C", "D")
        self.app.register_location("POPUP-1", LocationKind.POPUP, "P", "C", "D")
        self.app.open_popup("POPUP-1")
        self.expected: dict[tuple[str, str], int] = {}
        self.posted: dict[str, tuple[str, str, int]] = {}

    @rule(
        sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS), quantity=st.integers(1, 50)
    )
    def receive(self, sku: str, location: str, quantity: int) -> None:
        self.app.receive_stock(sku, location, quantity, "DN")
        self.expected[(sku, location)] = self.expected.get((sku, location), 0) + quantity

    @rule(
        sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS), quantity=st.integers(1, 9)
    )
    def sell(self, sku: str, location: str, quantity: int) -> None:
        sale_id = f"S-{len(self.posted)}"
        receipt = self.app.record_sale(
            "T-1", sale_id, location, "", None, [SaleLineInput(sku, quantity)], []
        )
        assert not receipt.replayed
        self.posted[sale_id] = (sku, location, quantity)
        self.expected[(sku, location)] = self.expected.get((sku, location), 0) - quantity

    @precondition(lambda self: bool(self.posted))
    @rule(data=st.data())
    def retry_a_posted_sale(self, data: st.DataObject) -> None:
        sale_id = data.draw(st.sampled_from(sorted(self.posted)))
        sku, location, quantity = self.posted[sale_id]
        receipt = self.app.record_sale(
            "T-1", sale_id, location, "", None, [SaleLineInput(sku, quantity)], []
        )
        assert receipt.replayed

    @invariant()
    def on_hand_equals_the_sum_of_movements(self) -> None:
        for (sku, location), expected in self.expected.items():
            item = self.app.get_stock_item(sku, location)
            assert item is not None
            assert item.on_hand == expected

    def teardown(self) -> None:
        self.app.close()


TestStockLedger = StockLedger.TestCase
TestStockLedger.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)

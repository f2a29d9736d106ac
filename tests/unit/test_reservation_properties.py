"""Invariants of the online flagship over random interleavings of its operations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from domain.catalog import SkuTerms
from domain.errors import DomainError
from domain.online import ReservedLine
from domain.values import CampaignKind, LocationKind, Money, ReservationStatus
from services.application import RetailApp
from services.flash import FlashSales, Outcome
from tests.unit.conftest import Clock

SKU, LIMITED, ONLINE = "A-1", "LTD-1", "ONLINE"
MEMBERS = ("", "M-1", "M-2")


class Flagship(RuleBasedStateMachine):
    """Confirmed units never exceed stock, available never goes below zero, and a retry of any
    command never applies twice, whatever the order of receipts, reservations, cancellations,
    confirmations, expiries, campaigns and flash purchases."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(datetime(2026, 2, 6, tzinfo=UTC))
        self.app = RetailApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=self.clock)
        self.app.register_sku(SKU, "A", "", Money(100, "CNY"))
        self.app.register_sku(LIMITED, "L", "", Money(100, "CNY"), SkuTerms(member_limit=3))
        self.app.register_location(ONLINE, LocationKind.ONLINE_FLAGSHIP, "F", "C", "D")
        self.flash = FlashSales(self.app, max_batch=4)
        self.received = {SKU: 0, LIMITED: 0}
        self.confirmed = {SKU: 0, LIMITED: 0}
        self.orders: list[str] = []
        self.campaign_active = False
        self.live = ""
        self.count = 0

    def next_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}-{self.count}"

    @rule(sku=st.sampled_from((SKU, LIMITED)), quantity=st.integers(1, 20))
    def receive(self, sku: str, quantity: int) -> None:
        self.app.receive_stock(sku, ONLINE, quantity, "DN")
        self.received[sku] += quantity

    @rule(
        sku=st.sampled_from((SKU, LIMITED)),
        quantity=st.integers(1, 6),
        member=st.sampled_from(MEMBERS),
        in_campaign=st.booleans(),
        hold=st.integers(1, 120),
    )
    def reserve(self, sku: str, quantity: int, member: str, in_campaign: bool, hold: int) -> None:
        order = self.next_id("O")
        campaign = self.live if in_campaign and self.campaign_active and sku == SKU else ""
        lines = [ReservedLine(sku, quantity)]
        try:
            self.app.reserve(order, member, ONLINE, lines, campaign, timedelta(seconds=hold))
        except DomainError:
            return
        self.orders.append(order)
        again = self.app.reserve(order, member, ONLINE, lines, campaign, timedelta(seconds=hold))
        assert again.replayed

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data(), confirm=st.booleans())
    def settle(self, data: st.DataObject, confirm: bool) -> None:
        order = data.draw(st.sampled_from(self.orders))
        before = self.app.get_reservation(order).status
        try:
            view = (self.app.confirm_reservation if confirm else self.app.cancel_reservation)(order)
        except DomainError:
            return
        if confirm and before is ReservationStatus.HELD:
            for line in view.lines:
                self.confirmed[line.sku] += line.quantity
        # Settling twice changes nothing.
        repeat = (self.app.confirm_reservation if confirm else self.app.cancel_reservation)(order)
        assert repeat.replayed

    @rule(seconds=st.integers(1, 90))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)
        self.app.expire_due()

    @precondition(lambda self: not self.campaign_active)
    @rule(quantity=st.integers(1, 10))
    def start_campaign(self, quantity: int) -> None:
        code = self.next_id("LIVE")
        try:
            self.app.start_campaign(code, CampaignKind.LIVESTREAM, ONLINE, {SKU: quantity})
        except DomainError:
            return
        self.app.end_campaign(code)  # a short one: exercised, then its stock goes back
        code = self.next_id("LIVE")
        try:
            self.app.start_campaign(code, CampaignKind.LIVESTREAM, ONLINE, {SKU: quantity})
        except DomainError:
            return
        self.live, self.campaign_active = code, True

    @precondition(lambda self: self.campaign_active)
    @rule()
    def end_campaign(self) -> None:
        self.app.end_campaign(self.live)
        self.campaign_active = False

    @rule(sku=st.sampled_from((SKU, LIMITED)), member=st.sampled_from(MEMBERS[1:]),
          quantity=st.integers(1, 3), retry=st.booleans())  # fmt: skip
    def flash_buy(self, sku: str, member: str, quantity: int, retry: bool) -> None:
        order = self.next_id("F")
        result = self.flash.buy(order, sku, ONLINE, member, quantity)
        if result.outcome is Outcome.CONFIRMED:
            self.confirmed[sku] += quantity
        if retry:
            again = self.flash.buy(order, sku, ONLINE, member, quantity)
            assert again.replayed == (result.outcome is Outcome.CONFIRMED)

    @invariant()
    def confirmed_never_exceeds_stock_and_available_never_goes_negative(self) -> None:
        for sku in (SKU, LIMITED):
            levels = self.app.stock_levels(sku, ONLINE)
            assert self.confirmed[sku] <= self.received[sku]
            assert levels.on_hand == self.received[sku] - self.confirmed[sku]
            assert levels.available >= 0
            assert levels.reserved >= 0 and levels.allocated >= 0

    def teardown(self) -> None:
        self.flash.stop()
        self.app.close()


TestFlagship = Flagship.TestCase
TestFlagship.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)

"""The write side's use cases: primitives and value objects in, receipts with positions out.

Each use case gets the aggregates it needs, calls their commands (which check every rule
before recording anything), and saves all of them in one transaction. A refused command raises
before the save, so nothing is written. A lost optimistic-concurrency race is retried.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Recording

from domain.catalog import Location, PopupDetails, Sku, SkuTerms
from domain.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidStateError,
    InvalidValueError,
    MembersOnlyError,
    NotASellingLocationError,
    UnknownCampaignError,
    UnknownLocationError,
    UnknownReservationError,
    UnknownSaleError,
    UnknownSkuError,
    UnknownTransferError,
)
from domain.finance import BusinessDay, SettlementBatch, SettlementLine
from domain.online import (
    RESERVATION_CONFIRMED,
    RESERVATION_PLACED,
    RESERVATION_RELEASED,
    Campaign,
    MemberQuota,
    Reservation,
    ReservedLine,
)
from domain.sales import LATE_AFTER, Payment, PosSale, ReturnLine, SaleLine, check_sale
from domain.shifts import Shift, Terminal, ZTotal
from domain.stock import Levels, StockItem
from domain.transfers import Transfer
from domain.values import (
    AdjustmentReason,
    CampaignKind,
    LocationKind,
    Money,
    ReservationStatus,
    require_code,
)
from services.transcodings import register_domain_transcodings

T = TypeVar("T")
A = TypeVar("A", bound=Aggregate)

# A command that lost an optimistic-concurrency race is retried this many times before the
# caller is told to retry (ABORTED).
MAX_ATTEMPTS = 8
DEFAULT_HOLD = timedelta(minutes=15)
MAX_HOLD = timedelta(hours=24)
# A till's clock may run ahead of ours, but not by this much: a sale or return said to happen
# later than this after our clock is refused (its business day is not one we can book yet).
MAX_CLOCK_AHEAD = timedelta(hours=1)


@dataclass(frozen=True)
class StockReceipt:
    sku: str
    location: str
    levels: Levels
    position: int

    @property
    def on_hand(self) -> int:
        return self.levels.on_hand


@dataclass(frozen=True)
class SaleLineInput:
    """A line as the terminal sent it; prices left out mean the SKU's list price."""

    sku: str
    quantity: int
    unit_price: Money | None = None
    discount: Money | None = None


@dataclass(frozen=True)
class SaleInput:
    """A sale as the terminal posted it."""

    terminal: str
    client_sale_id: str
    location: str
    staff: str
    occurred_at: datetime | None
    lines: list[SaleLineInput]
    payments: list[Payment]


@dataclass(frozen=True)
class AdmittedSale:
    """A posted sale that passed the checks needing no stock: priced, with its id."""

    posted: SaleInput
    sale_id: UUID
    lines: list[SaleLine]
    admitted_at: datetime

    @property
    def happened(self) -> datetime:
        return self.posted.occurred_at or self.admitted_at

    @property
    def late(self) -> bool:
        return self.admitted_at - self.happened > LATE_AFTER


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
    shift_id: str
    late: bool
    after_shift_close: bool


@dataclass(frozen=True)
class ReturnReceipt:
    sale_id: UUID
    return_id: str
    lines: list[ReturnLine]
    refund: Money
    position: int
    replayed: bool


@dataclass(frozen=True)
class ReservationView:
    order_id: str
    member: str
    location: str
    lines: list[ReservedLine]
    campaign: str
    status: ReservationStatus
    expires_at: datetime
    position: int
    replayed: bool = False


@dataclass(frozen=True)
class TransferView:
    code: str
    source: str
    destination: str
    sent: dict[str, int]
    received: dict[str, int] | None
    lost: dict[str, int]
    position: int


class RetailApp(Application[UUID]):
    """The write side: catalogue, locations, stock, POS, online reservations and campaigns."""

    name = "Retail"
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "20000",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
    }

    def __init__(
        self, env: dict[str, str] | None = None, clock: Callable[[], datetime] | None = None
    ) -> None:
        super().__init__(env)
        self.clock = clock or (lambda: datetime.now(UTC))
        # Set after every save, so the relay wakes without polling the event store.
        self.new_events = threading.Event()
        # The version of each stock item as this process last saved it, by (sku, location).
        self.stock_versions: dict[tuple[str, str], int] = {}
        # A SKU never changes once registered, nor a location's kind: kept here after the
        # first read, the hot paths skip a store read per call (the repository's cache still
        # asks the store for newer events on every get).
        self._skus: dict[str, Sku] = {}
        self._kinds: dict[str, LocationKind] = {}
        self._holds: list[tuple[datetime, str]] = []  # (expires_at, order) of held reservations
        self._holds_lock = threading.Lock()
        # Application.save does nothing beyond storing the events with these settings: no
        # snapshots, an aggregate cache that fast-forwards from the store instead of being
        # filled on save, and no _notify or notify hook of our own (see _put).
        repository = self.repository
        self._plain_saves = (
            self.snapshots is None
            and (not repository.cache or repository.fastforward)
            and type(self)._notify is Application._notify
            and type(self).notify is Application.notify
        )
        self._load_holds()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_domain_transcodings(transcoder)

    # Catalogue and locations

    def register_sku(
        self, code: str, name: str, series: str, list_price: Money, terms: SkuTerms | None = None
    ) -> tuple[Sku, int]:
        """Registers a SKU; repeating an identical registration answers the existing one."""
        sku = Sku.register(code, name, series, list_price, terms)
        existing = self._find(Sku, sku.id)
        if existing is not None:
            existing.check_same_as(name, series, list_price, terms)
            return existing, 0
        return sku, self._save_new(
            sku, lambda: self.register_sku(code, name, series, list_price, terms)
        )

    def register_location(
        self,
        code: str,
        kind: LocationKind,
        name: str,
        city: str,
        district: str,
        popup: PopupDetails | None = None,
    ) -> tuple[Location, int]:
        location = Location.register(code, kind, name, city, district, popup)
        existing = self._find(Location, location.id)
        if existing is not None:
            existing.check_same_as(kind, name, city, district, popup)
            return existing, 0
        return location, self._save_new(
            location, lambda: self.register_location(code, kind, name, city, district, popup)
        )

    def get_sku(self, code: str) -> Sku:
        """The SKU as registered (read-only for callers: it is shared)."""
        sku = self._skus.get(code)
        if sku is None:
            sku = self._find(Sku, Sku.create_id(require_code("sku", code)))
            if sku is None:
                raise UnknownSkuError(code)
            self._skus[code] = sku
        return sku

    def knows_sku(self, code: str) -> bool:
        """Whether get_sku answers from memory (no store read)."""
        return code in self._skus

    def location_kind(self, code: str) -> LocationKind:
        kind = self._kinds.get(code)
        if kind is None:
            kind = self._kinds[code] = self.get_location(code).kind
        return kind

    def get_location(self, code: str) -> Location:
        location = self._find(Location, Location.create_id(require_code("location", code)))
        if location is None:
            raise UnknownLocationError(code)
        return location

    def open_popup(self, code: str) -> tuple[Location, int]:
        def attempt() -> tuple[Location, int]:
            location = self.get_location(code)
            location.open_popup()
            return location, self._save(location)

        return self._with_retries(attempt)

    def start_closing_popup(self, code: str) -> tuple[Location, int]:
        def attempt() -> tuple[Location, int]:
            location = self.get_location(code)
            location.start_closing()
            return location, self._save(location)

        return self._with_retries(attempt)

    def close_popup(self, code: str, final_count: dict[str, int]) -> tuple[Location, int]:
        """Closes a pop-up that holds nothing any more, recording the final count."""

        def attempt() -> tuple[Location, int]:
            location = self.get_location(code)
            items = [
                item
                for sku in location.stocked
                if (item := self._find(StockItem, StockItem.create_id(sku, code))) is not None
            ]
            held = {item.sku: item.on_hand + item.incoming for item in items}
            location.close(held, final_count)
            # Sealing every stock item here in the same transaction makes a concurrent
            # movement lose the race (its version is taken) and see the close on its retry.
            for item in items:
                item.seal()
            return location, self._save(location, *items)

        return self._with_retries(attempt)

    # Stock

    def receive_stock(self, sku: str, location: str, quantity: int, reference: str) -> StockReceipt:
        """Books goods received at a location."""
        self.get_sku(sku)
        return self._move_stock(
            sku,
            location,
            lambda item: item.receive(quantity, reference),
            require=Location.check_can_receive,
        )

    def adjust_stock(
        self, sku: str, location: str, reason: AdjustmentReason, quantity: int, reference: str
    ) -> StockReceipt:
        """A count, damage, shrinkage, found units, a write-off or a quality hold."""
        self.get_sku(sku)
        self.get_location(location)
        return self._move_stock(
            sku, location, lambda item: item.adjust(reason, quantity, reference)
        )

    def set_safety_stock(
        self, sku: str, location: str, quantity: int, reference: str
    ) -> StockReceipt:
        self.get_sku(sku)
        self.get_location(location)
        return self._move_stock(
            sku, location, lambda item: item.set_safety_stock(quantity, reference)
        )

    def get_stock_item(self, sku: str, location: str) -> StockItem | None:
        return self._find(StockItem, StockItem.create_id(sku, location))

    def stock_levels(self, sku: str, location: str) -> Levels:
        """The write side's own figures (authoritative, unlike the views)."""
        self.get_sku(sku)
        self.get_location(location)
        item = self.get_stock_item(sku, location)
        return item.levels if item is not None else Levels(0, 0, 0, 0, 0, 0)

    def _move_stock(
        self,
        sku: str,
        location: str,
        move: Callable[[StockItem], None],
        require: Callable[[Location], None] | None = None,
    ) -> StockReceipt:
        def attempt() -> StockReceipt:
            # Checked inside each attempt: a retry after a lost race sees, say, a closed pop-up.
            place = self.get_location(location)
            if require is not None:
                require(place)
            items = _Items(self, location)
            item = items.get(sku)
            move(item)
            position = self._save(*items.pending())
            return StockReceipt(sku, location, item.levels, position)

        return self._with_retries(attempt)

    # Transfers

    def dispatch_transfer(
        self, code: str, source: str, destination: str, lines: dict[str, int]
    ) -> TransferView:
        """Goods leave `source` and show as incoming at `destination`."""
        for sku in lines:
            self.get_sku(sku)
        self.get_location(source).check_can_ship_out()
        self.get_location(destination).check_can_receive()

        def attempt() -> TransferView:
            existing = self._find(Transfer, Transfer.create_id(require_code("transfer_id", code)))
            if existing is not None:
                if (existing.source, existing.destination, existing.sent) != (
                    source, destination, lines,
                ):  # fmt: skip
                    raise AlreadyExistsError(f"transfer {code!r} exists with different contents")
                return self._transfer_view(existing, self._head())
            transfer = Transfer.dispatch(code, source, destination, lines)
            outgoing, incoming = _Items(self, source), _Items(self, destination)
            for sku, quantity in sorted(lines.items()):
                outgoing.get(sku).dispatch(quantity, code)
                incoming.get(sku).expect(quantity, code)
            position = self._save(transfer, *outgoing.pending(), *incoming.pending())
            return self._transfer_view(transfer, position)

        return self._with_retries(attempt)

    def receive_transfer(self, code: str, received: dict[str, int]) -> TransferView:
        """Books what arrived; the shortfall per SKU is recorded as lost in transit."""

        def attempt() -> TransferView:
            transfer = self._find(Transfer, Transfer.create_id(require_code("transfer_id", code)))
            if transfer is None:
                raise UnknownTransferError(code)
            if transfer.received is not None and transfer.received == {
                sku: received.get(sku, sent) for sku, sent in transfer.sent.items()
            }:
                return self._transfer_view(transfer, self._head())  # a retry
            self.get_location(transfer.destination).check_can_receive()
            transfer.receive(received)
            arrived = transfer.received or {}
            items = _Items(self, transfer.destination)
            for sku, sent in sorted(transfer.sent.items()):
                items.get(sku).receive_transfer(sent, arrived[sku], code)
            position = self._save(transfer, *items.pending())
            return self._transfer_view(transfer, position)

        return self._with_retries(attempt)

    @staticmethod
    def _transfer_view(transfer: Transfer, position: int) -> TransferView:
        return TransferView(
            transfer.code, transfer.source, transfer.destination, dict(transfer.sent),
            dict(transfer.received) if transfer.received is not None else None,
            dict(transfer.lost), position,
        )  # fmt: skip

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
        return self.record_posted_sale(
            SaleInput(terminal, client_sale_id, location, staff, occurred_at, lines, payments)
        )

    def record_posted_sale(self, posted: SaleInput) -> SaleReceipt:
        """`record_sale` of a sale as the terminal posted it."""
        sale = self.admit_sale(posted)

        def attempt() -> SaleReceipt:
            existing = self._find(PosSale, sale.sale_id)
            if existing is not None:
                existing.check_is_retry_of(posted.location, sale.lines, posted.payments)
                return self._receipt(existing, self._head(), replayed=True)
            till = self.find_terminal(posted.terminal)
            self.check_till(sale, till)
            items = _Items(self, posted.location)
            booked = self.book_sale(sale, till, items)
            position = self._save(booked, *items.pending())
            return self._receipt(booked, position, replayed=False)

        return self._with_retries(attempt)

    def admit_sale(self, posted: SaleInput) -> AdmittedSale:
        """The checks of a posted sale that need no stock and no terminal; its priced lines."""
        require_code("terminal_id", posted.terminal)
        require_code("client_sale_id", posted.client_sale_id)
        kind = self.location_kind(posted.location)
        if not kind.sells_at_till:
            raise NotASellingLocationError(posted.location, kind.value)
        self._require_happened("occurred_at", posted.occurred_at)
        priced = self._price_lines(posted.lines)
        check_sale(priced, posted.payments)
        sale_id = PosSale.create_id(posted.terminal, posted.client_sale_id)
        return AdmittedSale(posted, sale_id, priced, self.clock())

    def find_terminal(self, terminal: str) -> Terminal | None:
        return self._find(Terminal, Terminal.create_id(terminal))

    def check_till(self, sale: AdmittedSale, till: Terminal | None) -> None:
        """The checks that read the store but change nothing: the location still sells (only
        pop-ups open and close) and the terminal, if registered, is at it."""
        posted = sale.posted
        # Goods handed over while the terminal was offline are a fact even if the pop-up
        # has stopped selling since; a live sale needs an open location.
        if not sale.late and self.location_kind(posted.location) is LocationKind.POPUP:
            self.get_location(posted.location).check_sells()
        if till is not None:
            till.check_at(posted.location)

    def book_sale(self, sale: AdmittedSale, till: Terminal | None, items: _Items) -> PosSale:
        """Books the goods out of the location's stock items and creates the sale (unsaved).
        Nothing here refuses a checked sale: a sale is a fact, stock may go negative."""
        posted = sale.posted
        negative: list[str] = []
        for line in sale.lines:
            if items.get(line.sku).sell(line.quantity, sale.sale_id) and line.sku not in negative:
                negative.append(line.sku)
        closed_at = till.last_closed_at if till is not None else None
        return PosSale(
            terminal=posted.terminal,
            client_sale_id=posted.client_sale_id,
            location=posted.location,
            staff=posted.staff.strip(),
            occurred_at=sale.happened,
            lines=sale.lines,
            payments=posted.payments,
            negative_stock_skus=negative,
            shift_id=till.open_shift if till is not None else "",
            late=sale.late,
            after_shift_close=closed_at is not None and sale.happened < closed_at,
        )

    def record_return(
        self,
        terminal: str,
        client_sale_id: str,
        return_id: str,
        items: dict[str, int],
        refunds: list[Payment],
        *,
        damaged: bool,
        occurred_at: datetime | None = None,
    ) -> ReturnReceipt:
        """Takes goods back against the original sale; a retried return changes nothing."""
        require_code("terminal_id", terminal)
        require_code("client_sale_id", client_sale_id)
        require_code("return_id", return_id)
        self._require_happened("occurred_at", occurred_at)

        def attempt() -> ReturnReceipt:
            sale = self._find(PosSale, PosSale.create_id(terminal, client_sale_id))
            if sale is None:
                raise UnknownSaleError(terminal, client_sale_id)
            if return_id in sale.returns:
                lines = sale.returns[return_id]
                if {line.sku: line.quantity for line in lines} != items:
                    raise AlreadyExistsError(
                        f"return {return_id!r} of this sale was posted with different lines"
                    )
                return self._return_receipt(sale, return_id, lines, self._head(), replayed=True)
            till = self._find(Terminal, Terminal.create_id(terminal))
            lines = sale.return_goods(
                return_id, items, refunds, damaged=damaged,
                occurred_at=occurred_at or self.clock(),
                shift_id=till.open_shift if till is not None else "",
            )  # fmt: skip
            stock = _Items(self, sale.location)
            for line in lines:
                stock.get(line.sku).take_back(line.quantity, sale.id, damaged=damaged)
            position = self._save(sale, *stock.pending())
            return self._return_receipt(sale, return_id, lines, position, replayed=False)

        return self._with_retries(attempt)

    @staticmethod
    def _return_receipt(
        sale: PosSale, return_id: str, lines: list[ReturnLine], position: int, *, replayed: bool
    ) -> ReturnReceipt:
        refund = Money.zero(sale.total.currency)
        for line in lines:
            refund = refund.plus(line.refund)
        return ReturnReceipt(sale.id, return_id, list(lines), refund, position, replayed)

    def open_shift(
        self, terminal: str, shift_id: str, location: str, staff: str, cash_float: Money
    ) -> tuple[Shift, int]:
        place = self.get_location(location)
        if not place.kind.sells_at_till:
            raise NotASellingLocationError(location, place.kind.value)

        def attempt() -> tuple[Shift, int]:
            existing = self._find(Shift, Shift.create_id(terminal, shift_id))
            if existing is not None:
                if existing.closed_at is not None or existing.location != location:
                    raise AlreadyExistsError(f"shift {shift_id!r} of {terminal!r} already exists")
                return existing, self._head()
            shift = Shift.start(terminal, shift_id, location, staff, cash_float, self.clock())
            till = self._find(Terminal, Terminal.create_id(terminal))
            if till is None:
                till = Terminal(terminal=terminal, location=location)
            till.check_at(location)
            till.start_shift(shift_id)
            return shift, self._save(shift, till)

        return self._with_retries(attempt)

    def close_shift(
        self, terminal: str, shift_id: str, z_report: list[ZTotal], counted_cash: Money
    ) -> tuple[Shift, int]:
        def attempt() -> tuple[Shift, int]:
            shift = self._find(Shift, Shift.create_id(terminal, shift_id))
            till = self._find(Terminal, Terminal.create_id(terminal))
            if shift is None or till is None:
                raise InvalidStateError(f"terminal {terminal!r} has no shift {shift_id!r}")
            if shift.closed_at is not None and (shift.z_report, shift.counted_cash) == (
                z_report, counted_cash,
            ):  # fmt: skip
                return shift, self._head()  # a retry
            now = self.clock()
            shift.close(z_report, counted_cash, now)
            till.end_shift(shift_id, now)
            return shift, self._save(shift, till)

        return self._with_retries(attempt)

    # Finance

    def close_business_day(self, location: str, day: str) -> int:
        """Closes a location's business day; later sales for it become visible adjustments."""
        self.get_location(location)

        def attempt() -> int:
            existing = self._find(BusinessDay, BusinessDay.create_id(location, day))
            if existing is not None:
                return self._head()  # closed already: a retry
            return self._save(BusinessDay.close(location, day, self.clock()))

        return self._with_retries(attempt)

    def import_settlement(self, batch: str, provider: str, lines: list[SettlementLine]) -> int:
        """Records a payment provider's settlement file; the same file again changes nothing."""

        def attempt() -> int:
            existing = self._find(
                SettlementBatch, SettlementBatch.create_id(require_code("batch_id", batch))
            )
            if existing is not None:
                existing.check_same(provider, lines)
                return self._head()
            return self._save(SettlementBatch.take(batch, provider, lines))

        return self._with_retries(attempt)

    # Online flagship: campaigns

    def start_campaign(
        self, code: str, kind: CampaignKind, location: str, allocations: dict[str, int]
    ) -> tuple[Campaign, int]:
        """Sets stock aside at the flagship for one livestream, member drop or pre-sale."""
        self._require_flagship(location)
        for sku in allocations:
            self.get_sku(sku)

        def attempt() -> tuple[Campaign, int]:
            existing = self._find(Campaign, Campaign.create_id(require_code("campaign", code)))
            if existing is not None:
                if (existing.kind, existing.location, existing.allocations) != (
                    kind, location, allocations,
                ):  # fmt: skip
                    raise AlreadyExistsError(f"campaign {code!r} exists with other details")
                return existing, self._head()  # a retry
            campaign = Campaign.start(code, kind, location, allocations)
            items = _Items(self, location)
            for sku, quantity in sorted(allocations.items()):
                items.get(sku).allocate(quantity, code)
            return campaign, self._save(campaign, *items.pending())

        return self._with_retries(attempt)

    def end_campaign(self, code: str) -> tuple[Campaign, dict[str, int], int]:
        """Ends a campaign; what is left of its allocations returns to general stock."""

        def attempt() -> tuple[Campaign, dict[str, int], int]:
            campaign = self._get_campaign(code)
            campaign.end()
            items = _Items(self, campaign.location)
            returned = {
                sku: items.get(sku).return_allocation(code) for sku in sorted(campaign.allocations)
            }
            return campaign, returned, self._save(campaign, *items.pending())

        return self._with_retries(attempt)

    def _get_campaign(self, code: str) -> Campaign:
        campaign = self._find(Campaign, Campaign.create_id(require_code("campaign", code)))
        if campaign is None:
            raise UnknownCampaignError(code)
        return campaign

    # Online flagship: reservations

    def reserve(
        self,
        order_id: str,
        member: str,
        location: str,
        lines: list[ReservedLine],
        campaign: str = "",
        hold: timedelta = DEFAULT_HOLD,
    ) -> ReservationView:
        """Holds stock for an online order until it is paid, cancelled or the hold expires."""
        if not timedelta(seconds=1) <= hold <= MAX_HOLD:
            raise InvalidValueError("hold_seconds", "must be between 1 second and 24 hours")
        self._require_flagship(location)

        def attempt() -> ReservationView:
            now = self.clock()
            existing = self._find(
                Reservation, Reservation.create_id(require_code("order_id", order_id))
            )
            if existing is not None:
                if (existing.member, existing.location, existing.lines, existing.campaign) != (
                    member, location, lines, campaign,
                ):  # fmt: skip
                    raise AlreadyExistsError(f"order {order_id!r} was reserved with other contents")
                return self._reservation_view(existing, now, self._head(), replayed=True)
            reservation = Reservation.place(order_id, member, location, lines, campaign, now + hold)
            presale = False
            if campaign:
                drive = self._get_campaign(campaign)
                drive.check_admits(member, location, [line.sku for line in lines])
                presale = drive.kind is CampaignKind.PRESALE
            items = _Items(self, location)
            quotas = _Quotas(self, member)
            for line in lines:
                sku = self.get_sku(line.sku)
                sku.check_sellable(now, member, presale=presale)
                quotas.take(sku, line.quantity, order_id)
                items.get(line.sku).reserve(line.quantity, order_id, campaign)
            position = self._save(reservation, *items.pending(), *quotas.pending())
            self._remember_hold(reservation)
            return self._reservation_view(reservation, now, position)

        return self._with_retries(attempt)

    def confirm_reservation(self, order_id: str) -> ReservationView:
        """The order is paid: the held units leave stock. A pre-sale confirms from launch on."""

        def attempt() -> ReservationView:
            now = self.clock()
            reservation = self._get_reservation(order_id)
            if reservation.status is ReservationStatus.CONFIRMED:
                return self._reservation_view(reservation, now, self._head(), replayed=True)
            sold = []
            for line in reservation.lines:
                sku = self.get_sku(line.sku)
                sku.check_launched(now)
                price = sku.list_price
                sold.append(SaleLine(line.sku, line.quantity, price, Money.zero(price.currency),
                                     sku.terms.tax_rate_bp))  # fmt: skip
            reservation.confirm(now, sold)
            items = _Items(self, reservation.location)
            for line in reservation.lines:
                items.get(line.sku).confirm(line.quantity, order_id)
            position = self._save(reservation, *items.pending())
            return self._reservation_view(reservation, now, position)

        return self._with_retries(attempt)

    def cancel_reservation(self, order_id: str) -> ReservationView:
        return self._release(order_id, expired=False)

    def get_reservation(self, order_id: str) -> ReservationView:
        reservation = self._get_reservation(order_id)
        return self._reservation_view(reservation, self.clock(), self._head())

    def expire_due(self, limit: int = 500) -> int:
        """Releases held reservations whose hold has run out; answers how many it released."""
        now = self.clock()
        due: list[str] = []
        with self._holds_lock:
            while self._holds and self._holds[0][0] <= now and len(due) < limit:
                due.append(heapq.heappop(self._holds)[1])
        released = 0
        for order_id in due:
            try:
                reservation = self._find(Reservation, Reservation.create_id(order_id))
                if reservation is None or reservation.status is not ReservationStatus.HELD:
                    continue  # confirmed or cancelled meanwhile
                self._release(order_id, expired=True)
                released += 1
            except InvalidStateError:
                continue  # confirmed at the last moment
            except Exception:
                # Contended or failing: keep it queued, so stock is never held for good.
                with self._holds_lock:
                    heapq.heappush(self._holds, (now + timedelta(seconds=1), order_id))
                if len(due) == 1:
                    raise
        return released

    def _release(self, order_id: str, *, expired: bool) -> ReservationView:
        def attempt() -> ReservationView:
            now = self.clock()
            reservation = self._get_reservation(order_id)
            wanted = ReservationStatus.EXPIRED if expired else ReservationStatus.RELEASED
            if reservation.status is wanted:
                return self._reservation_view(reservation, now, self._head(), replayed=True)
            reservation.release(now, expired=expired)
            items = _Items(self, reservation.location)
            quotas = _Quotas(self, reservation.member)
            running = False
            if reservation.campaign:
                running = self._get_campaign(reservation.campaign).active
            for line in reservation.lines:
                items.get(line.sku).release(
                    line.quantity, order_id, reservation.campaign, campaign_running=running
                )
                quotas.give_back(self.get_sku(line.sku), line.quantity, order_id)
            position = self._save(reservation, *items.pending(), *quotas.pending())
            return self._reservation_view(reservation, now, position)

        return self._with_retries(attempt)

    def _get_reservation(self, order_id: str) -> Reservation:
        reservation = self._find(
            Reservation, Reservation.create_id(require_code("order_id", order_id))
        )
        if reservation is None:
            raise UnknownReservationError(order_id)
        return reservation

    @staticmethod
    def _reservation_view(
        reservation: Reservation, now: datetime, position: int, *, replayed: bool = False
    ) -> ReservationView:
        return ReservationView(
            reservation.order_id, reservation.member, reservation.location,
            list(reservation.lines), reservation.campaign, reservation.status_at(now),
            reservation.expires_at, position, replayed,
        )  # fmt: skip

    def _remember_hold(self, reservation: Reservation) -> None:
        with self._holds_lock:
            heapq.heappush(self._holds, (reservation.expires_at, reservation.order_id))

    def _load_holds(self) -> None:
        """Rebuilds the expiry queue from the stored reservation events (at start)."""
        held: dict[UUID, tuple[datetime, str]] = {}
        start = 0
        topics = [RESERVATION_PLACED, RESERVATION_CONFIRMED, RESERVATION_RELEASED]
        while True:
            page = self.recorder.select_notifications(
                start=start, limit=1000, topics=topics, inclusive_of_start=False
            )
            if not page:
                break
            for notification in page:
                event: Any = self.mapper.to_domain_event(notification)
                if notification.topic == RESERVATION_PLACED:
                    held[event.originator_id] = (event.expires_at, event.order_id)
                else:
                    held.pop(event.originator_id, None)
            start = page[-1].id
        self._holds = list(held.values())
        heapq.heapify(self._holds)

    def _require_flagship(self, location: str) -> None:
        kind = self.location_kind(location)
        if kind is not LocationKind.ONLINE_FLAGSHIP:
            raise InvalidValueError(
                "location",
                f"{location!r} is a {kind.value.replace('_', ' ')}, not the online flagship",
            )

    # Helpers

    def _price_lines(self, lines: list[SaleLineInput]) -> list[SaleLine]:
        priced = []
        for index, line in enumerate(lines):
            require_code(f"lines[{index}].sku", line.sku)
            sku = self.get_sku(line.sku)
            price = line.unit_price or sku.list_price
            priced.append(
                SaleLine(
                    line.sku,
                    line.quantity,
                    price,
                    line.discount or Money.zero(price.currency),
                    sku.terms.tax_rate_bp,
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
            shift_id=sale.flags.shift_id,
            late=sale.flags.late,
            after_shift_close=sale.flags.after_shift_close,
        )

    def _require_happened(self, name: str, moment: datetime | None) -> None:
        """A time a till says something happened: with a timezone, and not ahead of our clock
        by more than MAX_CLOCK_AHEAD."""
        if moment is None:
            return
        if moment.tzinfo is None:
            raise InvalidValueError(name, "must carry a timezone")
        now = self.clock()
        if moment - now > MAX_CLOCK_AHEAD:
            raise InvalidValueError(
                name,
                f"{moment.isoformat()} is more than {MAX_CLOCK_AHEAD} ahead of the server's "
                f"clock ({now.isoformat()}); check the terminal's clock",
            )

    def _head(self) -> int:
        """The newest position: a safe answer for a replay (at or after the original write)."""
        return self.recorder.max_notification_id() or 0

    def _find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        if not isinstance(aggregate, cls):
            raise TypeError(f"{aggregate_id} is a {type(aggregate).__name__}, not a {cls.__name__}")
        return aggregate

    def _save(self, *aggregates: Aggregate) -> int:
        recordings = self._put(aggregates)
        for aggregate in aggregates:
            if isinstance(aggregate, StockItem):
                # Flash desks keep their stock item in memory; this tells them when a command
                # of this process moved it (one from elsewhere shows as a lost race or by age).
                self.stock_versions[aggregate.sku, aggregate.location] = aggregate.version
        self.new_events.set()
        return max(r.notification.id for r in recordings)

    def _put(self, aggregates: tuple[Aggregate, ...]) -> list[Recording[UUID]]:
        """Stores the aggregates' pending events in one transaction. Application.save checks
        every object it is given against two runtime-checkable protocols (is it an event, can
        it collect events); on Python 3.11 those isinstance calls walk the protocols' members
        each time, about 25 us an aggregate, a tenth of a flash desk's batch. Our objects are
        all aggregates, so with the settings _plain_saves checks, their events go straight to
        the event store; otherwise the library's save does everything it does."""
        if not self._plain_saves:
            return self.save(*aggregates)
        return self.events.put([event for a in aggregates for event in a.collect_events()])

    def _save_new(self, aggregate: Aggregate, again: Callable[[], tuple[Any, int]]) -> int:
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


class _Items:
    """The stock items of one location touched by one command, opened on first use; a new
    SKU at a location is noted on the location (so a closing pop-up knows what to check)."""

    def __init__(self, app: RetailApp, location: str) -> None:
        self.app = app
        self.location = location
        self.items: dict[str, StockItem] = {}
        self.place: Location | None = None

    def get(self, sku: str) -> StockItem:
        item = self.items.get(sku)
        if item is None:
            item = self.app.get_stock_item(sku, self.location)
            if item is None:
                item = StockItem.open(sku, self.location)
                if self.place is None:
                    self.place = self.app.get_location(self.location)
                self.place.note_stocked(sku)
            self.items[sku] = item
        return item

    def pending(self) -> list[Aggregate]:
        touched: list[Aggregate] = list(self.items.values())
        if self.place is not None:
            touched.append(self.place)
        return touched


class _Quotas:
    """Per-member quotas of limited SKUs touched by one command."""

    def __init__(self, app: RetailApp, member: str) -> None:
        self.app = app
        self.member = member
        self.quotas: dict[str, MemberQuota] = {}

    def _get(self, sku: str) -> MemberQuota:
        quota = self.quotas.get(sku)
        if quota is None:
            quota = self.app._find(MemberQuota, MemberQuota.create_id(self.member, sku))
            if quota is None:
                quota = MemberQuota(member=self.member, sku=sku)
            self.quotas[sku] = quota
        return quota

    def take(self, sku: Sku, quantity: int, order: str) -> None:
        limit = sku.terms.member_limit
        if not limit:
            return
        if not self.member:
            raise MembersOnlyError(f"{sku.code} (limited to {limit} per member)")
        self._get(sku.code).take(quantity, limit, order)

    def room(self, sku: Sku) -> int | None:
        limit = sku.terms.member_limit
        return None if not limit or not self.member else self._get(sku.code).room(limit)

    def give_back(self, sku: Sku, quantity: int, order: str) -> None:
        if sku.terms.member_limit and self.member:
            self._get(sku.code).give_back(quantity, order)

    def pending(self) -> list[Aggregate]:
        return list(self.quotas.values())

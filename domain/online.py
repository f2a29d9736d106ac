"""The online flagship's aggregates: reservations, per-member quotas and campaigns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    CampaignNotActiveError,
    InvalidStateError,
    InvalidValueError,
    MemberLimitReachedError,
    MembersOnlyError,
    ReservationExpiredError,
)
from domain.ids import stream_id
from domain.sales import SaleLine
from domain.values import (
    CampaignKind,
    Money,
    ReservationStatus,
    require_code,
    require_positive,
)

RESERVATION_PLACED = "retail.Reservation.Placed"
RESERVATION_CONFIRMED = "retail.Reservation.Confirmed"
RESERVATION_RELEASED = "retail.Reservation.Released"
QUOTA_OPENED = "retail.MemberQuota.Opened"
QUOTA_TAKEN = "retail.MemberQuota.Taken"
QUOTA_GIVEN_BACK = "retail.MemberQuota.GivenBack"
CAMPAIGN_STARTED = "retail.Campaign.Started"
CAMPAIGN_ENDED = "retail.Campaign.Ended"


@dataclass(frozen=True, slots=True)
class ReservedLine:
    sku: str
    quantity: int


class Reservation(Aggregate):
    """Units held for an online order until it is paid, cancelled or expires."""

    TOPIC = "retail.Reservation"

    class Created(Aggregate.Created):
        TOPIC = "retail.Reservation.Created"

    @staticmethod
    def create_id(order_id: str) -> UUID:
        return stream_id("reservation", order_id)

    @classmethod
    def place(
        cls,
        order_id: str,
        member: str,
        location: str,
        lines: list[ReservedLine],
        campaign: str,
        expires_at: datetime,
    ) -> Reservation:
        require_code("order_id", order_id)
        if member:
            require_code("member_id", member)
        if not lines:
            raise InvalidValueError("lines", "a reservation needs at least one line")
        skus = [line.sku for line in lines]
        if len(set(skus)) != len(skus):
            raise InvalidValueError("lines", "each SKU may appear once")
        for index, line in enumerate(lines):
            require_code(f"lines[{index}].sku", line.sku)
            require_positive(f"lines[{index}].quantity", line.quantity)
        return cls(order_id=order_id, member=member, location=location, lines=list(lines),
                   campaign=campaign, expires_at=expires_at)  # fmt: skip

    @event("Placed", topic=RESERVATION_PLACED)
    def __init__(
        self,
        order_id: str,
        member: str,
        location: str,
        lines: list[ReservedLine],
        campaign: str,
        expires_at: datetime,
    ) -> None:
        self.order_id = order_id
        self.member = member
        self.location = location
        self.lines = list(lines)
        self.campaign = campaign
        self.expires_at = expires_at
        self.status_value = ReservationStatus.HELD.value
        self.released_reason = ""

    @property
    def status(self) -> ReservationStatus:
        return ReservationStatus(self.status_value)

    def status_at(self, now: datetime) -> ReservationStatus:
        """Expiry is observable at read time, even before the sweeper has released it."""
        if self.status is ReservationStatus.HELD and now >= self.expires_at:
            return ReservationStatus.EXPIRED
        return self.status

    def confirm(self, now: datetime, sold: list[SaleLine]) -> None:
        """Paid: `sold` prices the lines as they sold (for sales and finance)."""
        status = self.status_at(now)
        if status is ReservationStatus.EXPIRED:
            raise ReservationExpiredError(self.order_id)
        if status is not ReservationStatus.HELD:
            raise InvalidStateError(f"order {self.order_id!r} is {status.value}, not held")
        self._confirmed(
            order_id=self.order_id, location=self.location, campaign=self.campaign,
            sold=list(sold), confirmed_at=now,
        )  # fmt: skip

    def release(self, now: datetime, *, expired: bool) -> None:
        if self.status is not ReservationStatus.HELD:
            raise InvalidStateError(f"order {self.order_id!r} is {self.status.value}, not held")
        if expired and now < self.expires_at:
            raise InvalidStateError(f"order {self.order_id!r} has not expired yet")
        self._released(
            order_id=self.order_id,
            status=(ReservationStatus.EXPIRED if expired else ReservationStatus.RELEASED).value,
            released_at=now,
        )

    @event("Confirmed", topic=RESERVATION_CONFIRMED)
    def _confirmed(
        self,
        order_id: str,
        location: str,
        campaign: str,
        sold: list[SaleLine],
        confirmed_at: datetime,
    ) -> None:
        self.status_value = ReservationStatus.CONFIRMED.value

    @event("Released", topic=RESERVATION_RELEASED)
    def _released(self, order_id: str, status: str, released_at: datetime) -> None:
        self.status_value = status


class MemberQuota(Aggregate):
    """Units of one limited SKU a member holds or bought, against the SKU's per-member limit."""

    TOPIC = "retail.MemberQuota"

    class Created(Aggregate.Created):
        TOPIC = "retail.MemberQuota.Created"

    @staticmethod
    def create_id(member: str, sku: str) -> UUID:
        return stream_id("quota", member, sku)

    @event("Opened", topic=QUOTA_OPENED)
    def __init__(self, member: str, sku: str) -> None:
        self.member = member
        self.sku = sku
        self.units = 0

    def room(self, limit: int) -> int:
        return max(limit - self.units, 0)

    def take(self, quantity: int, limit: int, order: str) -> None:
        if self.units + quantity > limit:
            raise MemberLimitReachedError(self.sku, limit, self.units)
        self._taken(quantity=quantity, order=order)

    def give_back(self, quantity: int, order: str) -> None:
        self._given_back(quantity=min(quantity, self.units), order=order)

    @event("Taken", topic=QUOTA_TAKEN)
    def _taken(self, quantity: int, order: str) -> None:
        self.units += quantity

    @event("GivenBack", topic=QUOTA_GIVEN_BACK)
    def _given_back(self, quantity: int, order: str) -> None:
        self.units -= quantity


class Campaign(Aggregate):
    """Stock set aside for a livestream session, a member-only drop or a pre-sale."""

    TOPIC = "retail.Campaign"

    class Created(Aggregate.Created):
        TOPIC = "retail.Campaign.Created"

    @staticmethod
    def create_id(code: str) -> UUID:
        return stream_id("campaign", code)

    @classmethod
    def start(
        cls, code: str, kind: CampaignKind, location: str, allocations: dict[str, int]
    ) -> Campaign:
        require_code("campaign", code)
        if not allocations:
            raise InvalidValueError("allocations", "a campaign sets aside at least one SKU")
        for sku, quantity in allocations.items():
            require_code("allocations.sku", sku)
            require_positive(f"allocations[{sku}]", quantity)
        return cls(code=code, kind=kind.value, location=location, allocations=dict(allocations))

    @event("Started", topic=CAMPAIGN_STARTED)
    def __init__(self, code: str, kind: str, location: str, allocations: dict[str, int]) -> None:
        self.code = code
        self.kind_value = kind
        self.location = location
        self.allocations = dict(allocations)
        self.active = True

    @property
    def kind(self) -> CampaignKind:
        return CampaignKind(self.kind_value)

    def check_admits(self, member: str, location: str, skus: list[str]) -> None:
        if not self.active:
            raise CampaignNotActiveError(self.code, "ended")
        if self.kind is CampaignKind.MEMBER_DROP and not member:
            raise MembersOnlyError(f"campaign {self.code}")
        outside = sorted(set(skus) - set(self.allocations))
        if location != self.location or outside:
            raise InvalidValueError(
                "campaign", f"campaign {self.code!r} sets aside no {', '.join(outside) or 'stock'} "
                f"at {location}"
            )  # fmt: skip

    def end(self) -> None:
        if not self.active:
            raise CampaignNotActiveError(self.code, "already ended")
        self._ended(code=self.code)

    @event("Ended", topic=CAMPAIGN_ENDED)
    def _ended(self, code: str) -> None:
        self.active = False


FLASH_BOUGHT = "retail.FlashOrder.Bought"
FLASH_BATCH = "retail.FlashBatch.Confirmed"


@dataclass(frozen=True, slots=True)
class FlashLine:
    """One confirmed flash-sale purchase inside a batch."""

    order_id: str
    member: str
    quantity: int
    campaign: str


class FlashBatch(Aggregate):
    """The purchases one commit of a flash-sale desk confirmed, for one SKU at one location.

    One event per batch instead of one aggregate per purchase: the desk decides hundreds of
    purchases per commit, and a purchase costs a list entry instead of an aggregate, a stored
    event and a Kafka message. Order ids stay unique because one desk owns each SKU and knows
    every order id confirmed before (see services/flash.py).
    """

    TOPIC = "retail.FlashBatch"

    class Created(Aggregate.Created):
        TOPIC = "retail.FlashBatch.Created"

    @event("Confirmed", topic=FLASH_BATCH)
    def __init__(
        self,
        sku: str,
        location: str,
        unit_price: Money,
        tax_rate_bp: int,
        orders: list[list[str | int]],
    ) -> None:
        self.sku = sku
        self.location = location
        self.unit_price = unit_price
        self.tax_rate_bp = tax_rate_bp
        self.orders = orders

    @staticmethod
    def rows(lines: list[FlashLine]) -> list[list[str | int]]:
        """The lines as the event stores them (plain lists keep the stored JSON small)."""
        return [[line.order_id, line.member, line.quantity, line.campaign] for line in lines]

    @property
    def reference(self) -> str:
        return f"flash-batch:{self.id}"


class FlashOrder(Aggregate):
    """A confirmed flash-sale purchase, as written before purchases were saved in batches: old
    event stores still hold these, so they are still read (never written any more)."""

    TOPIC = "retail.FlashOrder"

    class Created(Aggregate.Created):
        TOPIC = "retail.FlashOrder.Created"

    @staticmethod
    def create_id(order_id: str) -> UUID:
        return stream_id("flash-order", order_id)

    @event("Bought", topic=FLASH_BOUGHT)
    def __init__(
        self,
        order_id: str,
        sku: str,
        location: str,
        member: str,
        quantity: int,
        campaign: str,
        unit_price: Money,
        tax_rate_bp: int,
    ) -> None:
        self.order_id = order_id
        self.unit_price = unit_price
        self.tax_rate_bp = tax_rate_bp
        self.sku = sku
        self.location = location
        self.member = member
        self.quantity = quantity
        self.campaign = campaign

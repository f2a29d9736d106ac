"""The catalogue's aggregates: SKUs and locations, each identified by its business code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    InvalidStateError,
    InvalidValueError,
    LocationCodeTakenError,
    LocationNotOpenError,
    MembersOnlyError,
    NotLaunchedError,
    PopupStillHoldsStockError,
    SkuCodeTakenError,
)
from domain.ids import FlatCopy, stream_id
from domain.values import (
    LocationKind,
    Money,
    PopupStatus,
    require_code,
    require_non_negative,
    require_text,
)

# Stable topics of the stored events: part of the data, never renamed.
SKU_REGISTERED = "retail.Sku.Registered"
LOCATION_REGISTERED = "retail.Location.Registered"
POPUP_OPENED = "retail.Location.PopupOpened"
POPUP_CLOSING = "retail.Location.PopupClosing"
POPUP_CLOSED = "retail.Location.PopupClosed"
LOCATION_STOCKED = "retail.Location.SkuStocked"


@dataclass(frozen=True)
class SkuTerms:
    """How a SKU may be sold: tax, edition, membership, launch time, per-member limit."""

    tax_rate_bp: int = 0  # basis points: 1300 is 13 %
    limited_edition: bool = False
    member_only: bool = False
    launch_at: datetime | None = None
    member_limit: int = 0  # units per member; 0: no limit

    def check(self) -> None:
        if not 0 <= self.tax_rate_bp <= 10_000:
            raise InvalidValueError("tax_rate_bp", "must be between 0 and 10000 basis points")
        require_non_negative("member_limit", self.member_limit)
        if self.launch_at is not None and self.launch_at.tzinfo is None:
            raise InvalidValueError("launch_at", "must carry a timezone")


class Sku(Aggregate):
    """A sellable article with its list price and the terms it sells on."""

    TOPIC = "retail.Sku"

    class Created(Aggregate.Created):
        TOPIC = "retail.Sku.Created"

    @staticmethod
    def create_id(code: str) -> UUID:
        return stream_id("sku", code)

    @classmethod
    def register(
        cls, code: str, name: str, series: str, list_price: Money, terms: SkuTerms | None = None
    ) -> Sku:
        require_code("sku", code)
        if list_price.minor_units < 0:
            raise InvalidValueError("list_price", "must not be negative")
        terms = terms or SkuTerms()
        terms.check()
        return cls(
            code=code,
            name=require_text("name", name),
            series=series.strip(),
            list_price=list_price,
            tax_rate_bp=terms.tax_rate_bp,
            limited_edition=terms.limited_edition,
            member_only=terms.member_only,
            launch_at=terms.launch_at,
            member_limit=terms.member_limit,
        )

    @event("Registered", topic=SKU_REGISTERED)
    def __init__(
        self,
        code: str,
        name: str,
        series: str,
        list_price: Money,
        tax_rate_bp: int,
        limited_edition: bool,
        member_only: bool,
        launch_at: datetime | None,
        member_limit: int,
    ) -> None:
        self.code = code
        self.name = name
        self.series = series
        self.list_price = list_price
        self.terms = SkuTerms(tax_rate_bp, limited_edition, member_only, launch_at, member_limit)

    def check_same_as(
        self, name: str, series: str, list_price: Money, terms: SkuTerms | None = None
    ) -> None:
        """A repeated registration is welcome only when it says the same thing."""
        mine = (self.name, self.series, self.list_price, self.terms)
        if mine != (name.strip(), series.strip(), list_price, terms or SkuTerms()):
            raise SkuCodeTakenError(self.code)

    def check_sellable(self, now: datetime, member: str, *, presale: bool = False) -> None:
        """Online rules: launch time (a pre-sale may reserve before it) and membership."""
        launch = self.terms.launch_at
        if launch is not None and now < launch and not presale:
            raise NotLaunchedError(self.code, launch.isoformat())
        if self.terms.member_only and not member:
            raise MembersOnlyError(self.code)

    def check_launched(self, now: datetime) -> None:
        launch = self.terms.launch_at
        if launch is not None and now < launch:
            raise NotLaunchedError(self.code, launch.isoformat())


@dataclass(frozen=True)
class PopupDetails:
    venue: str = ""
    opens_on: str = ""  # ISO dates, for people; the lifecycle commands decide selling
    closes_on: str = ""


class Location(FlatCopy, Aggregate):
    """A place that holds stock: the online flagship, a warehouse, a partner store or a pop-up.

    A pop-up goes planned -> open -> closing -> closed and sells only while open; every other
    kind is open from registration.
    """

    TOPIC = "retail.Location"

    class Created(Aggregate.Created):
        TOPIC = "retail.Location.Created"

    @staticmethod
    def create_id(code: str) -> UUID:
        return stream_id("location", code)

    @classmethod
    def register(
        cls,
        code: str,
        kind: LocationKind,
        name: str,
        city: str,
        district: str,
        popup: PopupDetails | None = None,
    ) -> Location:
        require_code("location", code)
        popup = popup or PopupDetails()
        if kind is not LocationKind.POPUP and popup != PopupDetails():
            raise InvalidValueError("popup", "only a pop-up has a venue and opening dates")
        return cls(
            code=code,
            kind=kind.value,
            name=require_text("name", name),
            city=city.strip(),
            district=district.strip(),
            venue=popup.venue.strip(),
            opens_on=popup.opens_on,
            closes_on=popup.closes_on,
        )

    @event("Registered", topic=LOCATION_REGISTERED)
    def __init__(
        self,
        code: str,
        kind: str,
        name: str,
        city: str,
        district: str,
        venue: str,
        opens_on: str,
        closes_on: str,
    ) -> None:
        self.code = code
        self.kind_value = kind
        self.name = name
        self.city = city
        self.district = district
        self.popup = PopupDetails(venue, opens_on, closes_on)
        self.status_value = (
            PopupStatus.PLANNED.value
            if kind == LocationKind.POPUP.value
            else PopupStatus.OPEN.value
        )
        self.final_count: dict[str, int] = {}
        self.stocked: list[str] = []

    @property
    def kind(self) -> LocationKind:
        return LocationKind(self.kind_value)

    @property
    def status(self) -> PopupStatus:
        return PopupStatus(self.status_value)

    def check_same_as(
        self,
        kind: LocationKind,
        name: str,
        city: str,
        district: str,
        popup: PopupDetails | None = None,
    ) -> None:
        mine = (self.kind, self.name, self.city, self.district, self.popup)
        given = (kind, name.strip(), city.strip(), district.strip(), popup or PopupDetails())
        if mine != given:
            raise LocationCodeTakenError(self.code)

    def check_sells(self) -> None:
        if self.status is not PopupStatus.OPEN:
            raise LocationNotOpenError(self.code, self.status.value)

    def check_can_receive(self) -> None:
        """Goods may arrive before a pop-up opens and while it sells; not once it is closing."""
        if self.status in (PopupStatus.CLOSING, PopupStatus.CLOSED):
            raise LocationNotOpenError(self.code, self.status.value, "receive goods")

    def note_stocked(self, sku: str) -> None:
        """Remembers each SKU ever stocked here, so a closing pop-up knows what to check."""
        if sku not in self.stocked:
            self._stocked(location=self.code, sku=sku)

    @event("SkuStocked", topic=LOCATION_STOCKED)
    def _stocked(self, location: str, sku: str) -> None:
        self.stocked.append(sku)

    def check_can_ship_out(self) -> None:
        """Stock may leave while open or closing (leftovers go back); not once closed."""
        if self.status is PopupStatus.CLOSED:
            raise LocationNotOpenError(self.code, self.status.value, "send goods out")

    # Pop-up lifecycle

    def _require_popup(self, status: PopupStatus, action: str) -> None:
        if self.kind is not LocationKind.POPUP:
            raise InvalidStateError(f"{self.code!r} is not a pop-up: it cannot {action}")
        if self.status is not status:
            raise InvalidStateError(
                f"pop-up {self.code!r} is {self.status.value}: it can {action} only when "
                f"{status.value}"
            )

    def open_popup(self) -> None:
        self._require_popup(PopupStatus.PLANNED, "open")
        self._opened(location=self.code)

    def start_closing(self) -> None:
        self._require_popup(PopupStatus.OPEN, "start closing")
        self._closing(location=self.code)

    def close(self, on_hand: dict[str, int], final_count: dict[str, int]) -> None:
        """Closes for good: nothing may be left, and the final count is recorded.

        `on_hand` is what stock says is there or on its way here; `final_count` what was
        counted. Either showing units refuses the close (transfer them out, or adjust the
        count, first).
        """
        self._require_popup(PopupStatus.CLOSING, "close")
        for sku, counted in final_count.items():
            require_code("final_count.sku", sku)
            require_non_negative(f"final_count[{sku}]", counted)
        leftovers = {sku: n for sku, n in on_hand.items() if n}
        leftovers.update({sku: n for sku, n in final_count.items() if n})
        if leftovers:
            raise PopupStillHoldsStockError(self.code, leftovers)
        self._closed(location=self.code, final_count=dict(final_count))

    @event("PopupOpened", topic=POPUP_OPENED)
    def _opened(self, location: str) -> None:
        self.status_value = PopupStatus.OPEN.value

    @event("PopupClosing", topic=POPUP_CLOSING)
    def _closing(self, location: str) -> None:
        self.status_value = PopupStatus.CLOSING.value

    @event("PopupClosed", topic=POPUP_CLOSED)
    def _closed(self, location: str, final_count: dict[str, int]) -> None:
        self.status_value = PopupStatus.CLOSED.value
        self.final_count = dict(final_count)

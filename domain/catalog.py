"""The catalogue's aggregates: SKUs and locations, each identified by its business code."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidValueError, LocationCodeTakenError, SkuCodeTakenError
from domain.ids import stream_id
from domain.values import LocationKind, Money, require_code, require_text

# Stable topics of the stored events: part of the data, never renamed.
SKU_REGISTERED = "retail.Sku.Registered"
LOCATION_REGISTERED = "retail.Location.Registered"


class Sku(Aggregate):
    """A sellable article with its list price."""

    TOPIC = "retail.Sku"

    class Created(Aggregate.Created):
        TOPIC = "retail.Sku.Created"

    @staticmethod
    def create_id(code: str) -> UUID:
        return stream_id("sku", code)

    @classmethod
    def register(cls, code: str, name: str, series: str, list_price: Money) -> Sku:
        require_code("sku", code)
        if list_price.minor_units < 0:
            raise InvalidValueError("list_price", "must not be negative")
        return cls(
            code=code,
            name=require_text("name", name),
            series=series.strip(),
            list_price=list_price,
        )

    @event("Registered", topic=SKU_REGISTERED)
    def __init__(self, code: str, name: str, series: str, list_price: Money) -> None:
        self.code = code
        self.name = name
        self.series = series
        self.list_price = list_price

    def check_same_as(self, name: str, series: str, list_price: Money) -> None:
        """A repeated registration is welcome only when it says the same thing."""
        if (self.name, self.series, self.list_price) != (name.strip(), series.strip(), list_price):
            raise SkuCodeTakenError(self.code)


class Location(Aggregate):
    """A place that holds stock: the online flagship, a warehouse, a partner store or a pop-up."""

    TOPIC = "retail.Location"

    class Created(Aggregate.Created):
        TOPIC = "retail.Location.Created"

    @staticmethod
    def create_id(code: str) -> UUID:
        return stream_id("location", code)

    @classmethod
    def register(
        cls, code: str, kind: LocationKind, name: str, city: str, district: str
    ) -> Location:
        require_code("location", code)
        return cls(
            code=code,
            kind=kind.value,
            name=require_text("name", name),
            city=city.strip(),
            district=district.strip(),
        )

    @event("Registered", topic=LOCATION_REGISTERED)
    def __init__(self, code: str, kind: str, name: str, city: str, district: str) -> None:
        self.code = code
        self.kind_value = kind
        self.name = name
        self.city = city
        self.district = district

    @property
    def kind(self) -> LocationKind:
        return LocationKind(self.kind_value)

    def check_same_as(self, kind: LocationKind, name: str, city: str, district: str) -> None:
        mine = (self.kind, self.name, self.city, self.district)
        if mine != (kind, name.strip(), city.strip(), district.strip()):
            raise LocationCodeTakenError(self.code)

"""Queries over the read models, called by the gRPC query servicers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select, bindparam, func, select, tuple_

from domain.stock import Levels
from projections.models import ConsumerOffset, LocationView, SkuView, StockView


@dataclass(frozen=True)
class LocationStock:
    sku: str
    location: str
    kind: str
    channel: str
    city: str
    district: str
    status: str
    levels: Levels
    position: int

    @property
    def on_hand(self) -> int:
        return self.levels.on_hand


@dataclass(frozen=True)
class StockSnapshot:
    sku: str
    known: bool
    locations: list[LocationStock]
    total_on_hand: int
    by_channel: dict[str, int]
    by_district: dict[str, int]
    online_available: int


@dataclass(frozen=True)
class StockFilter:
    sku: str = ""
    location: str = ""
    channel: str = ""
    district: str = ""
    low_stock_below: int = 0
    negative_only: bool = False


# Hot statements are built once from the tables' own columns: building a select from ORM
# attributes on every call cost about 0.3 ms a statement in SQLAlchemy's coercion and cache-key
# code (cProfile: 857 us for one GetStock's queries; 91 us prebuilt).
_STOCK = StockView.__table__
_LOCATION = LocationView.__table__
_OFFSET = ConsumerOffset.__table__
_SKU_KNOWN = select(SkuView.__table__.c.sku).where(SkuView.__table__.c.sku == bindparam("sku"))
# Every projector commit moves at least one partition's next offset, so the sum changes with
# every change to any view: a version for caching answers.
_VIEW_VERSION = select(func.min(_OFFSET.c.position), func.sum(_OFFSET.c.next_offset)).where(
    _OFFSET.c.consumer_group == bindparam("group")
)


def _rows() -> Select[Any]:
    s, loc = _STOCK.c, _LOCATION.c
    return select(
        s.sku, s.location, s.on_hand, s.reserved, s.safety_stock, s.unavailable, s.incoming,
        s.allocated, s.position, loc.kind, loc.channel, loc.city, loc.district, loc.status,
    ).select_from(_STOCK.outerjoin(_LOCATION, loc.location == s.location))  # fmt: skip


_STOCK_OF_SKU = _rows().where(_STOCK.c.sku == bindparam("sku")).order_by(_STOCK.c.location)


def _stock(row: Any) -> LocationStock:
    return LocationStock(
        sku=row.sku, location=row.location, kind=row.kind or "", channel=row.channel or "",
        city=row.city or "", district=row.district or "", status=row.status or "",
        levels=Levels(row.on_hand, row.reserved, row.safety_stock, row.unavailable,
                      row.incoming, row.allocated),
        position=row.position,
    )  # fmt: skip


class StockQueries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get_stock(self, sku: str, location: str = "") -> StockSnapshot:
        """A SKU's stock per location (all, or one) with totals over every location."""
        with self.engine.connect() as conn:
            every = [_stock(r) for r in conn.execute(_STOCK_OF_SKU, {"sku": sku})]
            known = bool(every) or conn.execute(_SKU_KNOWN, {"sku": sku}).first() is not None
        by_channel: dict[str, int] = {}
        by_district: dict[str, int] = {}
        for row in every:
            by_channel[row.channel] = by_channel.get(row.channel, 0) + row.on_hand
            by_district[row.district] = by_district.get(row.district, 0) + row.on_hand
        return StockSnapshot(
            sku=sku,
            known=known,
            locations=[s for s in every if s.location == location] if location else every,
            total_on_hand=sum(s.on_hand for s in every),
            by_channel=by_channel,
            by_district=by_district,
            online_available=sum(
                max(s.levels.available, 0) for s in every if s.kind == "online_flagship"
            ),
        )

    def nearby(
        self, sku: str, city: str, district: str, min_available: int, limit: int
    ) -> list[LocationStock]:
        """Open stores and pop-ups in the shopper's city holding the SKU, same district first."""
        available = (
            StockView.on_hand - StockView.reserved - StockView.safety_stock
            - StockView.unavailable - StockView.allocated
        )  # fmt: skip
        statement = (
            _rows()
            .where(
                StockView.sku == sku,
                LocationView.city == city,
                LocationView.kind.in_(("partner_store", "popup")),
                LocationView.status == "open",
                available >= max(min_available, 1),
            )
            .order_by(
                (LocationView.district == district).desc(), available.desc(), StockView.location
            )
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_stock(r) for r in conn.execute(statement)]

    def page(
        self, where: StockFilter, page_size: int, after: tuple[str, str] | None
    ) -> tuple[list[LocationStock], tuple[str, str] | None]:
        """One page of stock rows in (SKU, location) order, and the key to continue after."""
        statement = _rows()
        if where.sku:
            statement = statement.where(StockView.sku == where.sku)
        if where.location:
            statement = statement.where(StockView.location == where.location)
        if where.channel:
            statement = statement.where(LocationView.channel == where.channel)
        if where.district:
            statement = statement.where(LocationView.district == where.district)
        if where.low_stock_below:
            available = (
                StockView.on_hand - StockView.reserved - StockView.safety_stock
                - StockView.unavailable - StockView.allocated
            )  # fmt: skip
            statement = statement.where(available < where.low_stock_below)
        if where.negative_only:
            statement = statement.where(StockView.on_hand < 0)
        if after is not None:
            statement = statement.where(tuple_(StockView.sku, StockView.location) > after)
        statement = statement.order_by(StockView.sku, StockView.location).limit(page_size + 1)
        with self.engine.connect() as conn:
            rows = [_stock(r) for r in conn.execute(statement)]
        if len(rows) <= page_size:
            return rows, None
        rows = rows[:page_size]
        return rows, (rows[-1].sku, rows[-1].location)

    def changes(self, sku: str, location: str, after: int) -> list[LocationStock]:
        """Rows set by movements after write-side position `after`, oldest first."""
        statement = _rows().where(StockView.position > after)
        if sku:
            statement = statement.where(StockView.sku == sku)
        if location:
            statement = statement.where(StockView.location == location)
        with self.engine.connect() as conn:
            return [_stock(r) for r in conn.execute(statement.order_by(StockView.position))]


class ViewsBehindError(Exception):
    """The views have not reached the position a reader asked for within its deadline."""

    def __init__(self, reached: int, wanted: int) -> None:
        super().__init__(
            f"the views are complete up to position {reached}, not yet {wanted}; retry shortly"
        )
        self.reached = reached
        self.wanted = wanted


@dataclass(frozen=True)
class PartitionProgress:
    topic: str
    partition: int
    next_offset: int
    end_offset: int
    position: int

    @property
    def lag(self) -> int:
        return max(self.end_offset - self.next_offset, 0)


class ProgressQueries:
    """How far the projector group has come, from the rows it commits with every batch."""

    def __init__(self, engine: Engine, group: str) -> None:
        self.engine = engine
        self.group = group

    def partitions(self) -> list[PartitionProgress]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    ConsumerOffset.topic, ConsumerOffset.partition, ConsumerOffset.next_offset,
                    ConsumerOffset.end_offset, ConsumerOffset.position,
                )
                .where(ConsumerOffset.consumer_group == self.group)
                .order_by(ConsumerOffset.topic, ConsumerOffset.partition)
            ).all()  # fmt: skip
        return [PartitionProgress(*row) for row in rows]

    def view_position(self) -> int:
        """Every view is complete up to this position (0 before the projector has started)."""
        return self.version()[0]

    def version(self) -> tuple[int, int]:
        """(view position, a number that changes with every projector commit)."""
        with self.engine.connect() as conn:
            position, offsets = conn.execute(_VIEW_VERSION, {"group": self.group}).one()
        return int(position or 0), int(offsets or 0)

    def wait_for(self, position: int, timeout: float) -> int:
        """Waits until the views are complete up to `position`; answers where they are."""
        return self.wait_for_version(position, timeout)[0]

    def wait_for_version(self, position: int, timeout: float) -> tuple[int, int]:
        """wait_for, answering the version the views had when they reached `position`."""
        deadline = time.monotonic() + max(timeout, 0.0)
        delay = 0.002
        while True:
            version = self.version()
            reached = version[0]
            if reached >= position:
                return version
            if time.monotonic() >= deadline:
                raise ViewsBehindError(reached, position)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

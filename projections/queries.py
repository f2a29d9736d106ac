"""Queries over the read models, called by the gRPC query servicers."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from domain.stock import Levels
from projections.models import ConsumerOffset, LocationView, SkuView, StockView


@dataclass(frozen=True)
class LocationStock:
    location: str
    kind: str
    channel: str
    city: str
    district: str
    on_hand: int
    levels: Levels


@dataclass(frozen=True)
class StockSnapshot:
    sku: str
    known: bool
    locations: list[LocationStock]
    total_on_hand: int
    by_channel: dict[str, int]
    view_position: int


class StockQueries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get_stock(self, sku: str, location: str = "") -> StockSnapshot:
        """A SKU's stock per location (all, or one) with the total over every location."""
        statement = (
            select(
                StockView.location,
                StockView.on_hand,
                StockView.reserved,
                StockView.safety_stock,
                StockView.unavailable,
                StockView.incoming,
                StockView.allocated,
                StockView.position,
                LocationView.kind,
                LocationView.channel,
                LocationView.city,
                LocationView.district,
            )
            .outerjoin(LocationView, LocationView.location == StockView.location)
            .where(StockView.sku == sku)
            .order_by(StockView.location)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(statement).all()
            known = bool(rows) or (
                conn.execute(select(SkuView.sku).where(SkuView.sku == sku)).first() is not None
            )
        every: list[LocationStock] = []
        by_channel: dict[str, int] = {}
        position = 0
        for row in rows:
            channel = row.channel or ""
            every.append(
                LocationStock(
                    location=row.location,
                    kind=row.kind or "",
                    channel=channel,
                    city=row.city or "",
                    district=row.district or "",
                    on_hand=row.on_hand,
                    levels=Levels(
                        row.on_hand,
                        row.reserved,
                        row.safety_stock,
                        row.unavailable,
                        row.incoming,
                        row.allocated,
                    ),
                )
            )
            by_channel[channel] = by_channel.get(channel, 0) + row.on_hand
            position = max(position, row.position)
        shown = [s for s in every if s.location == location] if location else every
        return StockSnapshot(
            sku=sku,
            known=known,
            locations=shown,
            total_on_hand=sum(s.on_hand for s in every),
            by_channel=by_channel,
            view_position=position,
        )


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
        with self.engine.connect() as conn:
            reached = conn.execute(
                select(func.min(ConsumerOffset.position)).where(
                    ConsumerOffset.consumer_group == self.group
                )
            ).scalar()
        return int(reached or 0)

    def wait_for(self, position: int, timeout: float) -> int:
        """Waits until the views are complete up to `position`; answers where they are."""
        deadline = time.monotonic() + max(timeout, 0.0)
        delay = 0.002
        while True:
            reached = self.view_position()
            if reached >= position:
                return reached
            if time.monotonic() >= deadline:
                raise ViewsBehindError(reached, position)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

"""Queries over the read models, called by the gRPC query servicers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from domain.stock import Levels
from projections.models import LocationView, SkuView, StockView


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

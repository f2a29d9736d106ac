"""Pure row builders: one envelope in, the view rows it sets out. No I/O here.

Rows carry absolute state (on hand after the movement), so applying the newest row for a key
is the same as applying each in turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from protos.retail.v1 import common_pb2, events_pb2

CHANNEL_NAMES = {
    common_pb2.CHANNEL_ONLINE: "online",
    common_pb2.CHANNEL_WAREHOUSE: "warehouse",
    common_pb2.CHANNEL_STORE: "store",
    common_pb2.CHANNEL_POPUP: "popup",
}
KIND_NAMES = {
    common_pb2.LOCATION_KIND_ONLINE_FLAGSHIP: ("online_flagship", "online"),
    common_pb2.LOCATION_KIND_WAREHOUSE: ("warehouse", "warehouse"),
    common_pb2.LOCATION_KIND_PARTNER_STORE: ("partner_store", "store"),
    common_pb2.LOCATION_KIND_POPUP: ("popup", "popup"),
}


class UnknownEventError(ValueError):
    """An envelope whose payload this reader cannot apply."""


@dataclass(frozen=True)
class Row:
    table: str
    key: tuple[Any, ...]
    values: dict[str, Any]


def rows_for(envelope: events_pb2.EventEnvelope) -> list[Row]:
    kind = envelope.WhichOneof("payload")
    position = envelope.position
    if kind in {"stock_received", "stock_sold"}:
        movement = getattr(envelope, kind)
        return [_stock(movement.sku, movement.location, movement.on_hand_after, envelope)]
    if kind == "stock_item_opened":
        opened = envelope.stock_item_opened
        return [_stock(opened.sku, opened.location, 0, envelope)]
    if kind == "sku_registered":
        sku = envelope.sku_registered
        return [
            Row("sku_view", (sku.sku,), {
                "sku": sku.sku, "name": sku.name, "series": sku.series,
                "list_price_minor": sku.list_price.minor_units, "currency": sku.list_price.currency,
            })
        ]  # fmt: skip
    if kind == "location_registered":
        location = envelope.location_registered
        kind_name, channel = KIND_NAMES[location.kind]
        return [
            Row("location_view", (location.location,), {
                "location": location.location, "kind": kind_name, "channel": channel,
                "name": location.name, "city": location.city, "district": location.district,
            })
        ]  # fmt: skip
    if kind == "sale_recorded":
        sale = envelope.sale_recorded
        return [
            Row("sale_view", (sale.sale_id,), {
                "sale_id": sale.sale_id, "terminal": sale.terminal,
                "client_sale_id": sale.client_sale_id, "location": sale.location,
                "total_minor": sale.total.minor_units, "currency": sale.total.currency,
                "units": sum(line.quantity for line in sale.lines),
                "occurred_at": envelope.occurred_at.ToDatetime(tzinfo=UTC),
                "position": position,
            })
        ]  # fmt: skip
    raise UnknownEventError(f"no view applies event type {envelope.event_type!r} ({kind})")


def _stock(sku: str, location: str, on_hand: int, envelope: events_pb2.EventEnvelope) -> Row:
    return Row(
        "stock_view",
        (sku, location),
        {
            "sku": sku,
            "location": location,
            "on_hand": on_hand,
            "position": envelope.position,
            "updated_at": envelope.recorded_at.ToDatetime(tzinfo=UTC),
        },
    )

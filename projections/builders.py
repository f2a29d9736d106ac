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
    """A view row by primary key. A partial row changes only the columns it names of a row
    that must already exist (or arrive earlier in the same batch)."""

    table: str
    key: tuple[Any, ...]
    values: dict[str, Any]
    partial: bool = False


def rows_for(envelope: events_pb2.EventEnvelope) -> list[Row]:
    kind = envelope.WhichOneof("payload")
    position = envelope.position
    if kind == "stock_moved":
        moved = envelope.stock_moved
        return [_stock(moved.sku, moved.location, moved.levels, envelope)]
    if kind == "stock_item_opened":
        opened = envelope.stock_item_opened
        return [_stock(opened.sku, opened.location, events_pb2.StockLevels(), envelope)]
    if kind == "popup_status_changed":
        changed = envelope.popup_status_changed
        # Only the status: a partial row merged into the location's registration row.
        return [
            Row("location_view", (changed.location,),
                {"location": changed.location, "status": changed.status}, partial=True)
        ]  # fmt: skip
    if kind == "sale_returned":
        returned = envelope.sale_returned
        return [
            Row("sale_return_view", (returned.sale_id, returned.return_id), {
                "sale_id": returned.sale_id, "return_id": returned.return_id,
                "location": returned.location,
                "units": sum(line.quantity for line in returned.lines),
                "refund_minor": returned.refund_total.minor_units,
                "currency": returned.refund_total.currency, "damaged": returned.damaged,
                "occurred_at": envelope.occurred_at.ToDatetime(tzinfo=UTC),
                "position": position,
            })
        ]  # fmt: skip
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
                "status": "planned" if kind_name == "popup" else "open",
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
    if kind in NO_VIEW_YET:
        return []
    raise UnknownEventError(f"no view applies event type {envelope.event_type!r} ({kind})")


# Payloads this reader knows but builds no view from (yet): applied as no-ops, so their
# stream versions are still tracked.
NO_VIEW_YET = frozenset(
    {
        "shift_opened", "shift_closed", "transfer_dispatched", "transfer_received",
        "reservation_placed", "reservation_settled", "campaign_started", "campaign_ended",
        "flash_order_confirmed", "sku_stocked", "stock_sealed",
    }
)  # fmt: skip


def _stock(
    sku: str, location: str, levels: events_pb2.StockLevels, envelope: events_pb2.EventEnvelope
) -> Row:
    return Row(
        "stock_view",
        (sku, location),
        {
            "sku": sku,
            "location": location,
            "on_hand": levels.on_hand,
            "reserved": levels.reserved,
            "safety_stock": levels.safety_stock,
            "unavailable": levels.unavailable,
            "incoming": levels.incoming,
            "allocated": levels.allocated,
            "available": levels.available,
            "position": envelope.position,
            "updated_at": envelope.recorded_at.ToDatetime(tzinfo=UTC),
        },
    )

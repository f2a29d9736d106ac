"""Maps the write side's domain events to the protobuf contract on Kafka (protos/.../events.proto).

Stored events are not forwarded as they are: their JSON carries library type tags. Each event
type is mapped explicitly, so the Kafka contract changes only on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from google.protobuf.timestamp_pb2 import Timestamp

from domain.catalog import LOCATION_REGISTERED, SKU_REGISTERED
from domain.ids import NAMESPACE
from domain.sales import SALE_RECORDED
from domain.stock import STOCK_OPENED, STOCK_RECEIVED, STOCK_SOLD
from domain.values import Channel, LocationKind, Money, PaymentMethod
from protos.retail.v1 import common_pb2, events_pb2
from services.bus import CATALOG_TOPIC, SALES_TOPIC, STOCK_TOPIC

SCHEMA_VERSION = 1

CHANNEL_TO_PROTO = {
    Channel.ONLINE: common_pb2.CHANNEL_ONLINE,
    Channel.WAREHOUSE: common_pb2.CHANNEL_WAREHOUSE,
    Channel.STORE: common_pb2.CHANNEL_STORE,
    Channel.POPUP: common_pb2.CHANNEL_POPUP,
}
KIND_TO_PROTO = {
    LocationKind.ONLINE_FLAGSHIP: common_pb2.LOCATION_KIND_ONLINE_FLAGSHIP,
    LocationKind.WAREHOUSE: common_pb2.LOCATION_KIND_WAREHOUSE,
    LocationKind.PARTNER_STORE: common_pb2.LOCATION_KIND_PARTNER_STORE,
    LocationKind.POPUP: common_pb2.LOCATION_KIND_POPUP,
}
PAYMENT_TO_PROTO = {
    PaymentMethod.CASH: common_pb2.PAYMENT_METHOD_CASH,
    PaymentMethod.ALIPAY: common_pb2.PAYMENT_METHOD_ALIPAY,
    PaymentMethod.WECHAT_PAY: common_pb2.PAYMENT_METHOD_WECHAT_PAY,
    PaymentMethod.BANK_CARD: common_pb2.PAYMENT_METHOD_BANK_CARD,
}


@dataclass(frozen=True)
class LocationFacts:
    """What an envelope's source needs to know about a location."""

    kind: LocationKind
    district: str


LocationLookup = Callable[[str], LocationFacts | None]


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes
    envelope: events_pb2.EventEnvelope


def event_id(stream_id: UUID, version: int) -> UUID:
    return uuid5(NAMESPACE, f"event/{stream_id}/{version}")


def timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def money(value: Money) -> common_pb2.Money:
    return common_pb2.Money(minor_units=value.minor_units, currency=value.currency)


def _source(location: str, lookup: LocationLookup, terminal: str = "") -> events_pb2.Source:
    facts = lookup(location)
    if facts is None:
        return events_pb2.Source(location=location, terminal=terminal)
    return events_pb2.Source(
        channel=CHANNEL_TO_PROTO[facts.kind.channel],
        location=location,
        district=facts.district,
        terminal=terminal,
    )


def to_outgoing(
    event: Any, position: int, application: str, lookup: LocationLookup
) -> Outgoing | None:
    """The Kafka record for one domain event (typed Any: the event classes are made by the
    aggregates' decorators), or None for events that stay on the write side."""
    topic: str = type(event).TOPIC
    envelope = events_pb2.EventEnvelope(
        event_id=str(event_id(event.originator_id, event.originator_version)),
        event_type=topic,
        schema_version=SCHEMA_VERSION,
        stream_id=str(event.originator_id),
        stream_version=event.originator_version,
        occurred_at=timestamp(event.timestamp),
        recorded_at=timestamp(event.timestamp),
        position=position,
        application=application,
    )
    if topic == SKU_REGISTERED:
        envelope.sku_registered.CopyFrom(
            events_pb2.SkuRegistered(
                sku=event.code,
                name=event.name,
                series=event.series,
                list_price=money(event.list_price),
            )
        )
        return Outgoing(CATALOG_TOPIC, event.code.encode(), envelope)
    if topic == LOCATION_REGISTERED:
        kind = LocationKind(event.kind)
        envelope.source.CopyFrom(
            events_pb2.Source(channel=CHANNEL_TO_PROTO[kind.channel], location=event.code,
                              district=event.district)
        )  # fmt: skip
        envelope.location_registered.CopyFrom(
            events_pb2.LocationRegistered(
                location=event.code, kind=KIND_TO_PROTO[kind], name=event.name, city=event.city,
                district=event.district,
            )
        )  # fmt: skip
        return Outgoing(CATALOG_TOPIC, event.code.encode(), envelope)
    if topic == STOCK_OPENED:
        envelope.source.CopyFrom(_source(event.location, lookup))
        envelope.stock_item_opened.CopyFrom(
            events_pb2.StockItemOpened(sku=event.sku, location=event.location)
        )
        return Outgoing(STOCK_TOPIC, event.sku.encode(), envelope)
    if topic in {STOCK_RECEIVED, STOCK_SOLD}:
        return _stock_movement(event, envelope, lookup)
    if topic == SALE_RECORDED:
        envelope.occurred_at.CopyFrom(timestamp(event.occurred_at))
        envelope.source.CopyFrom(_source(event.location, lookup, terminal=event.terminal))
        recorded = envelope.sale_recorded
        recorded.sale_id = str(event.originator_id)
        recorded.terminal = event.terminal
        recorded.client_sale_id = event.client_sale_id
        recorded.location = event.location
        recorded.staff = event.staff
        total = None
        for line in event.lines:
            recorded.lines.add(
                sku=line.sku, quantity=line.quantity, unit_price=money(line.unit_price),
                discount=money(line.discount),
            )  # fmt: skip
            total = line.total if total is None else total.plus(line.total)
        for payment in event.payments:
            recorded.payments.add(
                method=PAYMENT_TO_PROTO[payment.method], amount=money(payment.amount)
            )
        if total is not None:
            recorded.total.CopyFrom(money(total))
        return Outgoing(SALES_TOPIC, str(event.originator_id).encode(), envelope)
    return None


def _stock_movement(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> Outgoing:
    sku: str = event.sku
    location: str = event.location
    envelope.source.CopyFrom(_source(location, lookup))
    if type(event).TOPIC == STOCK_RECEIVED:
        envelope.stock_received.CopyFrom(
            events_pb2.StockReceived(
                sku=sku, location=location, quantity=event.quantity, reference=event.reference,
                on_hand_after=event.on_hand_after,
            )
        )  # fmt: skip
    else:
        envelope.stock_sold.CopyFrom(
            events_pb2.StockSold(
                sku=sku, location=location, quantity=event.quantity, sale_id=str(event.sale_id),
                on_hand_after=event.on_hand_after, went_negative=event.on_hand_after < 0,
            )
        )  # fmt: skip
    return Outgoing(STOCK_TOPIC, sku.encode(), envelope)

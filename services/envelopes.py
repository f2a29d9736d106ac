"""Maps the write side's domain events to the protobuf contract on Kafka (protos/.../events.proto).

Stored events are not forwarded as they are: their JSON carries library type tags. Each event
type is mapped explicitly, so the Kafka contract changes only on purpose. Events that only the
write side needs (quotas, terminals, index notes) stay there: `to_outgoing` answers None.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from domain.catalog import (
    LOCATION_REGISTERED,
    LOCATION_STOCKED,
    POPUP_CLOSED,
    POPUP_CLOSING,
    POPUP_OPENED,
    SKU_REGISTERED,
)
from domain.finance import DAY_CLOSED, SETTLEMENT_IMPORTED
from domain.ids import NAMESPACE
from domain.online import (
    CAMPAIGN_ENDED,
    CAMPAIGN_STARTED,
    FLASH_BATCH,
    FLASH_BOUGHT,
    RESERVATION_CONFIRMED,
    RESERVATION_PLACED,
    RESERVATION_RELEASED,
)
from domain.sales import SALE_RECORDED, SALE_RETURNED
from domain.shifts import SHIFT_CLOSED, SHIFT_OPENED
from domain.stock import STOCK_MOVED, STOCK_OPENED, STOCK_SEALED
from domain.transfers import TRANSFER_DISPATCHED, TRANSFER_RECEIVED
from domain.values import Channel, LocationKind, Money, PaymentMethod
from protos.retail.v1 import common_pb2, events_pb2
from services.bus import CATALOG_TOPIC, ORDERS_TOPIC, SALES_TOPIC, STOCK_TOPIC

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


_NAMESPACE_BYTES = NAMESPACE.bytes


def event_id_text(stream_id: str, version: int) -> str:
    """str(uuid5(NAMESPACE, f"event/{stream_id}/{version}")) without building UUID objects:
    the same SHA-1 name-based UUID (RFC 4122 version 5), formatted directly. The relay maps
    every event through here (uuid5 and UUID formatting were a fifth of to_outgoing)."""
    name = f"event/{stream_id}/{version}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(moment: datetime) -> Timestamp:
    if moment.tzinfo is None:
        ts = Timestamp()
        ts.FromDatetime(moment)
        return ts
    delta = moment - _EPOCH  # days, seconds and microseconds, normalised like a Timestamp
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def money(value: Money) -> common_pb2.Money:
    return common_pb2.Money(minor_units=value.minor_units, currency=value.currency)


def _set_source(
    envelope: events_pb2.EventEnvelope, location: str, lookup: LocationLookup, terminal: str = ""
) -> None:
    """Where the event happened, written into the envelope's own field (building a Source to
    copy in took a stock movement's mapping from 2.5 to 6.3 us, with its levels built alike)."""
    source = envelope.source
    source.location = location
    if terminal:
        source.terminal = terminal
    facts = lookup(location)
    if facts is not None:
        source.channel = CHANNEL_TO_PROTO[facts.kind.channel]
        source.district = facts.district


def to_outgoing(
    event: Any, position: int, application: str, lookup: LocationLookup
) -> Outgoing | None:
    """The Kafka record for one domain event (typed Any: the event classes are made by the
    aggregates' decorators), or None for events that stay on the write side."""
    topic: str = type(event).TOPIC
    mapper = _MAPPERS.get(topic)
    if mapper is None:
        return None
    stream = str(event.originator_id)
    moment = timestamp(event.timestamp)
    envelope = events_pb2.EventEnvelope(
        event_id=event_id_text(stream, event.originator_version),
        event_type=topic,
        schema_version=SCHEMA_VERSION,
        stream_id=stream,
        stream_version=event.originator_version,
        occurred_at=moment,
        recorded_at=moment,
        position=position,
        application=application,
    )
    kafka_topic, key = mapper(event, envelope, lookup)
    return Outgoing(kafka_topic, key.encode(), envelope)


Mapper = Callable[[Any, events_pb2.EventEnvelope, LocationLookup], tuple[str, str]]


def _sku_registered(
    event: Any, envelope: events_pb2.EventEnvelope, _: LocationLookup
) -> tuple[str, str]:
    payload = envelope.sku_registered
    payload.sku, payload.name, payload.series = event.code, event.name, event.series
    payload.list_price.CopyFrom(money(event.list_price))
    payload.tax_rate_bp = event.tax_rate_bp
    payload.limited_edition = event.limited_edition
    payload.member_only = event.member_only
    payload.member_limit = event.member_limit
    if event.launch_at is not None:
        payload.launch_at.CopyFrom(timestamp(event.launch_at))
    return CATALOG_TOPIC, event.code


def _location_registered(
    event: Any, envelope: events_pb2.EventEnvelope, _: LocationLookup
) -> tuple[str, str]:
    kind = LocationKind(event.kind)
    envelope.source.CopyFrom(
        events_pb2.Source(
            channel=CHANNEL_TO_PROTO[kind.channel], location=event.code, district=event.district
        )
    )
    envelope.location_registered.CopyFrom(
        events_pb2.LocationRegistered(
            location=event.code, kind=KIND_TO_PROTO[kind], name=event.name, city=event.city,
            district=event.district, venue=event.venue, opens_on=event.opens_on,
            closes_on=event.closes_on,
        )
    )  # fmt: skip
    return CATALOG_TOPIC, event.code


def _popup_status(status: str) -> Mapper:
    def mapper(
        event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
    ) -> tuple[str, str]:
        _set_source(envelope, event.location, lookup)
        changed = envelope.popup_status_changed
        changed.location, changed.status = event.location, status
        changed.final_count.update(getattr(event, "final_count", {}))
        return CATALOG_TOPIC, event.location

    return mapper


def _stock_opened(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup)
    envelope.stock_item_opened.CopyFrom(
        events_pb2.StockItemOpened(sku=event.sku, location=event.location)
    )
    return STOCK_TOPIC, event.sku


def _stock_moved(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup)
    on_hand, reserved, safety, unavailable = (
        event.on_hand, event.reserved, event.safety_stock, event.unavailable
    )  # fmt: skip
    allocated = sum(event.allocations.values())
    moved = envelope.stock_moved
    moved.sku, moved.location, moved.reason = event.sku, event.location, event.reason
    moved.quantity, moved.reference = event.quantity, str(event.reference)
    moved.campaign, moved.went_negative = event.campaign, on_hand < 0
    levels = moved.levels
    levels.on_hand, levels.reserved, levels.safety_stock = on_hand, reserved, safety
    levels.unavailable, levels.incoming, levels.allocated = unavailable, event.incoming, allocated
    levels.available = on_hand - reserved - safety - unavailable - allocated
    return STOCK_TOPIC, event.sku


def _sale_recorded(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    envelope.occurred_at.CopyFrom(timestamp(event.occurred_at))
    _set_source(envelope, event.location, lookup, terminal=event.terminal)
    recorded = envelope.sale_recorded
    recorded.sale_id = str(event.originator_id)
    recorded.terminal, recorded.client_sale_id = event.terminal, event.client_sale_id
    recorded.location, recorded.staff = event.location, event.staff
    recorded.shift_id, recorded.late = event.shift_id, event.late
    recorded.after_shift_close = event.after_shift_close
    recorded.negative_stock_skus.extend(event.negative_stock_skus)
    total = None
    for line in event.lines:
        recorded.lines.add(
            sku=line.sku, quantity=line.quantity, unit_price=money(line.unit_price),
            discount=money(line.discount), tax_rate_bp=line.tax_rate_bp,
        )  # fmt: skip
        total = line.total if total is None else total.plus(line.total)
    for payment in event.payments:
        recorded.payments.add(
            method=PAYMENT_TO_PROTO[payment.method], amount=money(payment.amount),
            reference=payment.reference,
        )  # fmt: skip
    if total is not None:
        recorded.total.CopyFrom(money(total))
    return SALES_TOPIC, str(event.originator_id)


def _sale_returned(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    envelope.occurred_at.CopyFrom(timestamp(event.occurred_at))
    _set_source(envelope, event.location, lookup, terminal=event.terminal)
    returned = envelope.sale_returned
    returned.sale_id = str(event.originator_id)
    returned.terminal, returned.client_sale_id = event.terminal, event.client_sale_id
    returned.location, returned.return_id, returned.damaged = (
        event.location, event.return_id, event.damaged,
    )  # fmt: skip
    returned.shift_id = event.shift_id
    total = None
    for line in event.lines:
        returned.lines.add(
            sku=line.sku,
            quantity=line.quantity,
            refund=money(line.refund),
            tax_rate_bp=line.tax_rate_bp,
        )
        total = line.refund if total is None else total.plus(line.refund)
    for refund in event.refunds:
        returned.refunds.add(
            method=PAYMENT_TO_PROTO[refund.method],
            amount=money(refund.amount),
            reference=refund.reference,
        )
    if total is not None:
        returned.refund_total.CopyFrom(money(total))
    return SALES_TOPIC, str(event.originator_id)


def _shift_opened(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup, terminal=event.terminal)
    envelope.shift_opened.CopyFrom(
        events_pb2.ShiftOpened(
            terminal=event.terminal, shift_id=event.shift_id, location=event.location,
            staff=event.staff, cash_float=money(event.cash_float),
        )
    )  # fmt: skip
    return SALES_TOPIC, f"shift/{event.terminal}/{event.shift_id}"


def _shift_closed(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup, terminal=event.terminal)
    closed = envelope.shift_closed
    closed.terminal, closed.shift_id, closed.location = (
        event.terminal,
        event.shift_id,
        event.location,
    )
    closed.counted_cash.CopyFrom(money(event.counted_cash))
    for total in event.z_report:
        closed.z_report.add(method=PAYMENT_TO_PROTO[total.method], amount=money(total.amount))
    return SALES_TOPIC, f"shift/{event.terminal}/{event.shift_id}"


def _transfer_dispatched(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.source, lookup)
    dispatched = envelope.transfer_dispatched
    dispatched.transfer_id, dispatched.from_location = event.code, event.source
    dispatched.to_location = event.destination
    dispatched.sent.update(event.sent)
    return STOCK_TOPIC, f"transfer/{event.code}"


def _transfer_received(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.destination, lookup)
    received = envelope.transfer_received
    received.transfer_id, received.to_location = event.code, event.destination
    received.received.update(event.received)
    received.lost_in_transit.update(event.lost)
    return STOCK_TOPIC, f"transfer/{event.code}"


def _reservation_placed(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup)
    placed = envelope.reservation_placed
    placed.order_id, placed.member, placed.location = event.order_id, event.member, event.location
    placed.campaign = event.campaign
    placed.expires_at.CopyFrom(timestamp(event.expires_at))
    placed.lines.update({line.sku: line.quantity for line in event.lines})
    return ORDERS_TOPIC, event.order_id


def _reservation_settled(status: str | None) -> Mapper:
    def mapper(
        event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
    ) -> tuple[str, str]:
        settled = envelope.reservation_settled
        settled.order_id, settled.status = event.order_id, status or event.status
        if status == "confirmed":
            _set_source(envelope, event.location, lookup)
            settled.location, settled.campaign = event.location, event.campaign
            for line in event.sold:
                settled.sold.add(
                    sku=line.sku, quantity=line.quantity, unit_price=money(line.unit_price),
                    discount=money(line.discount), tax_rate_bp=line.tax_rate_bp,
                )  # fmt: skip
        return ORDERS_TOPIC, event.order_id

    return mapper


def _campaign_started(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup)
    started = envelope.campaign_started
    started.campaign, started.kind, started.location = event.code, event.kind, event.location
    started.allocations.update(event.allocations)
    return ORDERS_TOPIC, f"campaign/{event.code}"


def _campaign_ended(
    event: Any, envelope: events_pb2.EventEnvelope, _: LocationLookup
) -> tuple[str, str]:
    envelope.campaign_ended.campaign = event.code
    return ORDERS_TOPIC, f"campaign/{event.code}"


def _flash_bought(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup)
    envelope.flash_order_confirmed.CopyFrom(
        events_pb2.FlashOrderConfirmed(
            order_id=event.order_id, sku=event.sku, location=event.location, member=event.member,
            quantity=event.quantity, campaign=event.campaign, unit_price=money(event.unit_price),
            tax_rate_bp=event.tax_rate_bp,
        )
    )  # fmt: skip
    return ORDERS_TOPIC, event.order_id


def _flash_batch(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup)
    batch = envelope.flash_batch_confirmed
    batch.batch_id, batch.sku, batch.location = str(event.originator_id), event.sku, event.location
    batch.unit_price.CopyFrom(money(event.unit_price))
    batch.tax_rate_bp = event.tax_rate_bp
    # Added in place, the empty fields (a guest, no campaign: most orders) left unset: the
    # same bytes, in half the time of building the lines and extending the list with them
    # (24 against 52 us for 30 orders; a batch's orders were most of the relay's mapping).
    add = batch.orders.add
    for order_id, member, quantity, campaign in event.orders:
        order = add(order_id=order_id, quantity=quantity)
        if member:
            order.member = member
        if campaign:
            order.campaign = campaign
    return ORDERS_TOPIC, f"flash/{event.sku}@{event.location}"


def _sku_stocked(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup)
    envelope.sku_stocked.CopyFrom(events_pb2.SkuStocked(location=event.location, sku=event.sku))
    return CATALOG_TOPIC, event.location


def _stock_sealed(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup)
    envelope.stock_sealed.CopyFrom(events_pb2.StockSealed(sku=event.sku, location=event.location))
    return STOCK_TOPIC, event.sku


def _day_closed(
    event: Any, envelope: events_pb2.EventEnvelope, lookup: LocationLookup
) -> tuple[str, str]:
    _set_source(envelope, event.location, lookup)
    envelope.business_day_closed.CopyFrom(
        events_pb2.BusinessDayClosed(location=event.location, business_day=event.day)
    )
    return SALES_TOPIC, f"day/{event.location}/{event.day}"


def _settlement(
    event: Any, envelope: events_pb2.EventEnvelope, _: LocationLookup
) -> tuple[str, str]:
    imported = envelope.settlement_imported
    imported.batch_id, imported.provider = event.batch, event.provider
    for line in event.lines:
        imported.lines.add(
            reference=line.reference, method=PAYMENT_TO_PROTO[line.method],
            amount=money(line.amount), settled_at=timestamp(line.settled_at),
        )  # fmt: skip
    return SALES_TOPIC, f"settlement/{event.batch}"


_MAPPERS: dict[str, Mapper] = {
    DAY_CLOSED: _day_closed,
    SETTLEMENT_IMPORTED: _settlement,
    LOCATION_STOCKED: _sku_stocked,
    STOCK_SEALED: _stock_sealed,
    SHIFT_OPENED: _shift_opened,
    SHIFT_CLOSED: _shift_closed,
    TRANSFER_DISPATCHED: _transfer_dispatched,
    TRANSFER_RECEIVED: _transfer_received,
    RESERVATION_PLACED: _reservation_placed,
    RESERVATION_CONFIRMED: _reservation_settled("confirmed"),
    RESERVATION_RELEASED: _reservation_settled(None),
    CAMPAIGN_STARTED: _campaign_started,
    CAMPAIGN_ENDED: _campaign_ended,
    FLASH_BOUGHT: _flash_bought,
    FLASH_BATCH: _flash_batch,
    SKU_REGISTERED: _sku_registered,
    LOCATION_REGISTERED: _location_registered,
    POPUP_OPENED: _popup_status("open"),
    POPUP_CLOSING: _popup_status("closing"),
    POPUP_CLOSED: _popup_status("closed"),
    STOCK_OPENED: _stock_opened,
    STOCK_MOVED: _stock_moved,
    SALE_RECORDED: _sale_recorded,
    SALE_RETURNED: _sale_returned,
}

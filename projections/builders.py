"""Pure row builders: one envelope in, the view rows it sets out. No I/O here.

Rows carry absolute state (on hand after the movement), so applying the newest row for a key
is the same as applying each in turn.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from google.protobuf.timestamp_pb2 import Timestamp

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


class Facts(NamedTuple):
    """The sales facts of one event: each fact's own values (FACT_OWN order, one tuple a
    fact: a fact_line row without its ids) and the values every one of them shares
    (FACT_SHARED order: the event's fact_event row), held once."""

    own: list[tuple[Any, ...]]
    shared: tuple[Any, ...]

    def rows(self) -> list[dict[str, Any]]:
        """Each fact as the sales_fact view shows it, by column name."""
        event = dict(zip(FACT_SHARED, self.shared, strict=True))
        ids = event.pop("ids")
        facts = []
        for own in self.own:
            line = dict(zip(FACT_OWN, own, strict=True))
            facts.append({"id": f"{ids}{line.pop('line')}", **line, **event})
        return facts


class Row(NamedTuple):
    """A view row by primary key. A partial row changes only the columns it names of a row
    that must already exist (or arrive earlier in the same batch). A tuple: several are
    made for every event applied.

    The sales facts of an event are one Row whose values are `Facts` (its fact_event row and
    fact_line rows, read through the sales_fact view), keyed by the start of their ids (the
    event's position and id)."""

    table: str
    key: tuple[Any, ...]
    values: dict[str, Any] | Facts
    partial: bool = False

    def named(self) -> list[dict[str, Any]]:
        """The row's values by column name, one dict a fact for `Facts`."""
        if isinstance(self.values, Facts):
            return self.values.rows()
        return [self.values]


# A sales fact's own columns (its fact_line row but the ids), and those it shares with the
# other facts of its event (`_fact_base`: the event's fact_event row). Facts are most of the
# rows the projector writes (159,824 for a bench run's 107,783 records); built as `Facts`,
# not a dict each, the shared values are made and converted for binding once an event, and
# each fact is a tuple of its own values. Applying those records took 12 % fewer
# instructions than with a dict a fact (valgrind's cachegrind: 21,709 -> 19,093 million); a
# flash batch's facts, 7.9-9.0 -> 4.2-5.4 us an order built and bound.
FACT_OWN = (
    "line", "sale_id", "sku", "campaign", "units", "gross_minor", "discount_minor", "net_minor",
    "tax_minor", "currency",
)  # fmt: skip
FACT_SHARED = (
    "ids", "kind", "location", "channel", "district", "terminal", "shift_id", "occurred_at",
    "business_day", "local_hour", "late", "position",
)  # fmt: skip


def rows_for(envelope: events_pb2.EventEnvelope, kind: str | None = None) -> list[Row]:
    """The rows `envelope` sets; `kind` is its payload's name when the caller knows it."""
    if kind is None:
        kind = envelope.WhichOneof("payload")
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
    if kind in FINANCE_BUILDERS:
        return FINANCE_BUILDERS[kind](envelope)
    if kind in NO_VIEW_YET:
        return []
    raise UnknownEventError(f"no view applies event type {envelope.event_type!r} ({kind})")


def superseding_key(
    envelope: events_pb2.EventEnvelope, kind: str | None = None
) -> tuple[str, str] | None:
    """The key of the row a stock movement sets, None for any other payload. That row holds
    the item's levels after the movement, so a later movement of the same item supersedes
    it: a caller applying many envelopes at once needs to build only the last one of each
    key (with `rows_for`, which cannot refuse it). `kind`: as in `rows_for`."""
    if kind == "stock_moved" or (kind is None and envelope.HasField("stock_moved")):
        moved = envelope.stock_moved
        return moved.sku, moved.location
    return None


# Payloads this reader knows but builds no view from (yet): applied as no-ops, so their
# stream versions are still tracked.
NO_VIEW_YET = frozenset(
    {
        "transfer_dispatched", "transfer_received",
        "reservation_placed", "campaign_started", "campaign_ended",
        "sku_stocked", "stock_sealed",
    }
)  # fmt: skip


def _return_view(envelope: events_pb2.EventEnvelope, when: _When) -> list[Row]:
    returned, position = envelope.sale_returned, envelope.position
    return [
        Row("sale_return_view", (returned.sale_id, returned.return_id), {
            "sale_id": returned.sale_id, "return_id": returned.return_id,
            "location": returned.location,
            "units": sum(line.quantity for line in returned.lines),
            "refund_minor": returned.refund_total.minor_units,
            "currency": returned.refund_total.currency, "damaged": returned.damaged,
            "occurred_at": when.occurred,
            "position": position,
        })
    ]  # fmt: skip


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
            "updated_at": utc(envelope.recorded_at),
        },
    )


# Sales and finance facts. A business day and an hour are in Asia/Shanghai, where the
# retailer reports; instants stay UTC.

SHANGHAI = ZoneInfo("Asia/Shanghai")
PAYMENT_NAMES = {
    common_pb2.PAYMENT_METHOD_CASH: "cash",
    common_pb2.PAYMENT_METHOD_ALIPAY: "alipay",
    common_pb2.PAYMENT_METHOD_WECHAT_PAY: "wechat_pay",
    common_pb2.PAYMENT_METHOD_BANK_CARD: "bank_card",
}


def tax_included(amount: int, rate_bp: int) -> int:
    """The VAT inside a VAT-inclusive amount, rounded half away from zero to the fen."""
    if not rate_bp:
        return 0
    numerator, denominator = abs(amount) * rate_bp, 10_000 + rate_bp
    tax = (2 * numerator + denominator) // (2 * denominator)
    return tax if amount >= 0 else -tax


def local_day_and_hour(moment: datetime) -> tuple[str, str]:
    local = moment.astimezone(SHANGHAI)
    return local.date().isoformat(), local.strftime("%Y-%m-%dT%H")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(stamp: Timestamp) -> datetime:
    """A Timestamp as an aware UTC datetime (Timestamp.ToDatetime goes through more steps)."""
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


@functools.lru_cache(maxsize=4096)
def _day_and_hour_of_utc_hour(hours: int) -> tuple[str, str]:
    return local_day_and_hour(_EPOCH + timedelta(hours=hours))


def day_and_hour(stamp: Timestamp) -> tuple[str, str]:
    """local_day_and_hour of a Timestamp, worked out once per UTC hour: Asia/Shanghai's offset
    is a whole number of hours, so every moment of one UTC hour has the same local hour."""
    return _day_and_hour_of_utc_hour(stamp.seconds // 3600)


class _When(NamedTuple):
    """What an envelope's facts share, worked out once per envelope: its occurred_at as an
    instant, business day and hour, the start of its facts' ids and its position."""

    occurred: datetime
    day: str
    hour: str
    ids: str
    position: int


def _when(envelope: events_pb2.EventEnvelope) -> _When:
    stamp, position = envelope.occurred_at, envelope.position
    # A fact's id is its event's id and line after the event's position, zero-padded: facts
    # are then inserted in about key order instead of at random places of the id's index
    # (14.1 -> 11.1 us per sales_fact row on a bench run's events).
    ids = f"{position:012d}.{envelope.event_id}/"
    return _When(utc(stamp), *day_and_hour(stamp), ids, position)


def _fact_base(
    envelope: events_pb2.EventEnvelope, when: _When, kind: str, location: str, terminal: str,
    shift: str, late: bool,
) -> tuple[Any, ...]:  # fmt: skip
    """The values every fact of one envelope shares (FACT_SHARED)."""
    source = envelope.source
    return (
        when.ids, kind, location, CHANNEL_NAMES.get(source.channel, ""), source.district,
        terminal, shift, when.occurred, when.day, when.hour, late, when.position,
    )  # fmt: skip


def _fact(
    index: int, sale_id: str, sku: str, campaign: str, units: int, gross: int, discount: int,
    rate_bp: int, currency: str,
) -> tuple[Any, ...]:  # fmt: skip
    """A fact's own values (FACT_OWN)."""
    net = gross - discount
    tax = tax_included(net, rate_bp)
    return index, sale_id, sku, campaign, units, gross, discount, net, tax, currency


def _facts(when: _When, own: list[tuple[Any, ...]], shared: tuple[Any, ...]) -> list[Row]:
    """The event's facts as one row (see Row), none if it has none."""
    return [Row("sales_fact", (when.ids,), Facts(own, shared))] if own else []


def _payment(
    envelope: events_pb2.EventEnvelope, when: _When, index: int, sale_id: str, location: str,
    terminal: str, shift: str, payment: events_pb2.Payment, sign: int,
) -> Row:  # fmt: skip
    day = when.day
    key = f"{when.ids}p{index}"
    return Row("payment_fact", (key,), {
        "id": key, "sale_id": sale_id, "location": location, "terminal": terminal,
        "shift_id": shift, "method": PAYMENT_NAMES.get(payment.method, ""),
        "amount_minor": sign * payment.amount.minor_units, "currency": payment.amount.currency,
        "reference": payment.reference, "business_day": day, "position": when.position,
    })  # fmt: skip


def _sale_rows(envelope: events_pb2.EventEnvelope) -> list[Row]:
    """A till sale's view row, its lines' facts and its payments' facts.

    Each field of the event is read once: reading a field of a protobuf message looks it up
    by name and makes a new Python object each time. Read again for the view, each fact and
    each payment before, with the projector reading each payload's name twice: together,
    `Projector.apply` of a bench run's records went from 11,795 to 11,303 million
    instructions (valgrind's cachegrind)."""
    when = _when(envelope)
    sale = envelope.sale_recorded
    sale_id, location, terminal, shift = sale.sale_id, sale.location, sale.terminal, sale.shift_id
    position = when.position
    own = []
    units = 0
    for index, line in enumerate(sale.lines):
        quantity, price = line.quantity, line.unit_price
        gross, discount = price.minor_units * quantity, line.discount.minor_units
        net = gross - discount
        own.append((index, sale_id, line.sku, "", quantity, gross, discount, net,
                    tax_included(net, line.tax_rate_bp), price.currency))  # fmt: skip
        units += quantity
    total = sale.total
    rows = [
        Row("sale_view", (sale_id,), {
            "sale_id": sale_id, "terminal": terminal, "client_sale_id": sale.client_sale_id,
            "location": location, "total_minor": total.minor_units, "currency": total.currency,
            "units": units, "occurred_at": when.occurred, "position": position,
        })
    ]  # fmt: skip
    rows += _facts(when, own, _fact_base(envelope, when, "sale", location, terminal, shift,
                                         sale.late))  # fmt: skip
    rows += [
        _payment(envelope, when, i, sale_id, location, terminal, shift, p, 1)
        for i, p in enumerate(sale.payments)
    ]
    return rows


def _return_facts(envelope: events_pb2.EventEnvelope, when: _When) -> list[Row]:
    returned = envelope.sale_returned
    base = _fact_base(envelope, when, "return", returned.location, returned.terminal,
                      returned.shift_id, False)  # fmt: skip
    own = [
        _fact(i, returned.sale_id, line.sku, "", -line.quantity,
              -line.refund.minor_units, 0, line.tax_rate_bp, line.refund.currency)
        for i, line in enumerate(returned.lines)
    ]  # fmt: skip
    rows = _facts(when, own, base)
    rows += [
        _payment(
            envelope,
            when,
            i,
            returned.sale_id,
            returned.location,
            returned.terminal,
            returned.shift_id,
            p,
            -1,
        )
        for i, p in enumerate(returned.refunds)
    ]
    return rows


def _online_facts(envelope: events_pb2.EventEnvelope) -> list[Row]:
    when = _when(envelope)
    order = envelope.flash_order_confirmed
    base = _fact_base(envelope, when, "online", order.location, "", "", False)
    own = _fact(0, order.order_id, order.sku, order.campaign, order.quantity,
                order.unit_price.minor_units * order.quantity, 0, order.tax_rate_bp,
                order.unit_price.currency)  # fmt: skip
    return _facts(when, [own], base)


def _flash_batch_facts(envelope: events_pb2.EventEnvelope) -> list[Row]:
    """One online fact per purchase, like a purchase saved on its own (tax per order).

    A batch's orders share their price and tax rate, so the money of each quantity is
    worked out once (the same values as `_fact` with no discount): 1,089 -> 773 million
    instructions for a bench run's 100,000 orders in 5,593 batches (valgrind's cachegrind)."""
    when = _when(envelope)
    batch = envelope.flash_batch_confirmed
    price, currency, rate, sku = (
        batch.unit_price.minor_units, batch.unit_price.currency, batch.tax_rate_bp, batch.sku
    )  # fmt: skip
    base = _fact_base(envelope, when, "online", batch.location, "", "", False)
    money: dict[int, tuple[int, int]] = {}  # quantity: (gross, tax)
    own = []
    for index, order in enumerate(batch.orders):
        quantity = order.quantity
        known = money.get(quantity)
        if known is None:
            gross = price * quantity
            known = money[quantity] = (gross, tax_included(gross, rate))
        gross, tax = known
        own.append((index, order.order_id, sku, order.campaign, quantity, gross, 0, gross, tax,
                    currency))  # fmt: skip
    return _facts(when, own, base)


def _shift_rows(envelope: events_pb2.EventEnvelope) -> list[Row]:
    if envelope.HasField("shift_opened"):
        opened = envelope.shift_opened
        return [Row("shift_view", (opened.terminal, opened.shift_id), {
            "terminal": opened.terminal, "shift_id": opened.shift_id, "location": opened.location,
            "cash_float_minor": opened.cash_float.minor_units,
            "currency": opened.cash_float.currency, "closed": False, "counted_cash_minor": 0,
            "z_report": "",
        })]  # fmt: skip
    closed = envelope.shift_closed
    z_report = ";".join(
        f"{PAYMENT_NAMES.get(t.method, '')}={t.amount.minor_units}" for t in closed.z_report
    )
    return [Row("shift_view", (closed.terminal, closed.shift_id), {
        "terminal": closed.terminal, "shift_id": closed.shift_id, "closed": True,
        "counted_cash_minor": closed.counted_cash.minor_units, "z_report": z_report,
    }, partial=True)]  # fmt: skip


def _day_closed(envelope: events_pb2.EventEnvelope) -> list[Row]:
    closed = envelope.business_day_closed
    return [Row("day_close_view", (closed.location, closed.business_day), {
        "location": closed.location, "business_day": closed.business_day,
        "position": envelope.position,
    })]  # fmt: skip


def _settlement_rows(envelope: events_pb2.EventEnvelope) -> list[Row]:
    imported = envelope.settlement_imported
    rows = []
    for line in imported.lines:
        settled = line.settled_at.ToDatetime(tzinfo=UTC)
        rows.append(Row("settlement_line_view", (line.reference,), {
            "reference": line.reference, "batch_id": imported.batch_id,
            "method": PAYMENT_NAMES.get(line.method, ""), "amount_minor": line.amount.minor_units,
            "currency": line.amount.currency, "settled_at": settled,
            "business_day": local_day_and_hour(settled)[0],
        }))  # fmt: skip
    return rows


def _reservation_facts(envelope: events_pb2.EventEnvelope) -> list[Row]:
    when = _when(envelope)
    settled = envelope.reservation_settled
    base = _fact_base(envelope, when, "online", settled.location, "", "", False)
    own = [
        _fact(i, settled.order_id, line.sku, settled.campaign, line.quantity,
              line.unit_price.minor_units * line.quantity, line.discount.minor_units,
              line.tax_rate_bp, line.unit_price.currency)
        for i, line in enumerate(settled.sold)
    ]  # fmt: skip
    return _facts(when, own, base)


FINANCE_BUILDERS: dict[str, Callable[[events_pb2.EventEnvelope], list[Row]]] = {
    "reservation_settled": _reservation_facts,
    "sale_recorded": _sale_rows,
    "sale_returned": lambda e: [*_return_view(e, w := _when(e)), *_return_facts(e, w)],
    "flash_order_confirmed": _online_facts,
    "flash_batch_confirmed": _flash_batch_facts,
    "shift_opened": _shift_rows,
    "shift_closed": _shift_rows,
    "business_day_closed": _day_closed,
    "settlement_imported": _settlement_rows,
}

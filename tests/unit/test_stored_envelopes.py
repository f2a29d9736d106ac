"""Stock movements, till sales and flash batches are mapped from their stored JSON (see
services.envelopes): the envelope must say what the domain event says, for any values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Notification,
    UUIDAsHex,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import CurrencyMismatchError
from domain.online import FlashBatch
from domain.sales import Payment, PosSale, SaleLine
from domain.stock import StockItem
from domain.values import LocationKind, Money, PaymentMethod
from protos.retail.v1 import common_pb2, events_pb2
from services.bus import ORDERS_TOPIC, SALES_TOPIC, STOCK_TOPIC
from services.envelopes import (
    PAYMENT_TO_PROTO,
    LocationFacts,
    StoredFormError,
    timestamp,
    to_outgoing,
)
from services.transcodings import register_domain_transcodings

STORE = LocationFacts(LocationKind.PARTNER_STORE, "Dongcheng")


def mapper(compressed: bool = False) -> Mapper[Any]:
    """The application's mapper: the library's transcodings and the domain's."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    register_domain_transcodings(transcoder)
    return Mapper(transcoder, compressor=ZlibCompressor() if compressed else None)


MAPPER = mapper()


def stored(event: Any, position: int = 7, events: Mapper[Any] = MAPPER) -> Notification:
    record = events.to_stored_event(event)
    return Notification(
        id=position, originator_id=record.originator_id,
        originator_version=record.originator_version, topic=record.topic, state=record.state,
    )  # fmt: skip


def header(event: Any, position: int = 7) -> events_pb2.EventEnvelope:
    """The fields every envelope takes from its stored event."""
    from services.envelopes import _envelope  # noqa: PLC0415

    return _envelope(type(event).TOPIC, str(event.originator_id), event.originator_version,
                     event.timestamp, position, "Retail")  # fmt: skip


def pb_money(value: Money) -> common_pb2.Money:
    return common_pb2.Money(minor_units=value.minor_units, currency=value.currency)


text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def sales(draw: st.DrawFn) -> Any:
    currency = draw(st.sampled_from(["CNY", "HKD"]))

    def money(high: int) -> Money:
        return Money(draw(st.integers(0, high)), currency)

    lines = [
        SaleLine(draw(text), draw(st.integers(1, 10_000)), money(10**9), money(10**6),
                 draw(st.sampled_from([0, 600, 1300])))
        for _ in range(draw(st.integers(0, 5)))
    ]  # fmt: skip
    payments = [
        Payment(draw(st.sampled_from(list(PaymentMethod))), money(10**10), draw(text))
        for _ in range(draw(st.integers(0, 3)))
    ]
    return PosSale.Recorded(  # type: ignore[attr-defined]  # made by @event
        originator_id=uuid4(), originator_version=draw(st.integers(1, 3)),
        timestamp=draw(moments), originator_topic="retail.PosSale", terminal=draw(text),
        client_sale_id=draw(text), location="STORE-1", staff=draw(text),
        occurred_at=draw(moments), lines=lines, payments=payments,
        negative_stock_skus=draw(st.lists(text, max_size=3)), shift_id=draw(text),
        late=draw(st.booleans()), after_shift_close=draw(st.booleans()),
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(sales())
def test_a_stored_sale_maps_to_what_its_domain_event_says(event: Any) -> None:
    outgoing = to_outgoing(stored(event), MAPPER, "Retail", lambda code: STORE)
    assert outgoing is not None
    stream = str(event.originator_id)
    assert (outgoing.topic, outgoing.key) == (SALES_TOPIC, stream.encode())
    expected = header(event)
    expected.occurred_at.CopyFrom(timestamp(event.occurred_at))
    expected.source.CopyFrom(events_pb2.Source(
        channel=common_pb2.CHANNEL_STORE, location="STORE-1", district="Dongcheng",
        terminal=event.terminal,
    ))  # fmt: skip
    recorded = expected.sale_recorded
    recorded.sale_id, recorded.terminal, recorded.client_sale_id = (
        stream, event.terminal, event.client_sale_id,
    )  # fmt: skip
    recorded.location, recorded.staff, recorded.shift_id = "STORE-1", event.staff, event.shift_id
    recorded.late, recorded.after_shift_close = event.late, event.after_shift_close
    recorded.negative_stock_skus.extend(event.negative_stock_skus)
    total = None
    for line in event.lines:
        recorded.lines.add(
            sku=line.sku, quantity=line.quantity, unit_price=pb_money(line.unit_price),
            discount=pb_money(line.discount), tax_rate_bp=line.tax_rate_bp,
        )  # fmt: skip
        total = line.total if total is None else total.plus(line.total)
    for payment in event.payments:
        recorded.payments.add(
            method=PAYMENT_TO_PROTO[payment.method], amount=pb_money(payment.amount),
            reference=payment.reference,
        )  # fmt: skip
    if total is not None:
        recorded.total.CopyFrom(pb_money(total))
    assert outgoing.envelope == expected
    assert outgoing.envelope.SerializeToString() == expected.SerializeToString()


def moved(allocations: dict[str, int], on_hand: int, reference: Any = "R-1") -> Any:
    full = bool(allocations)
    return StockItem.Moved(  # type: ignore[attr-defined]  # made by @event
        originator_id=uuid4(), originator_version=4,
        timestamp=datetime(2026, 2, 6, 6, 1, 2, 345678, tzinfo=UTC), sku="TINA-30",
        location="STORE-1", reason="sold", quantity=2, reference=reference,
        campaign="LIVE-1" if full else "", on_hand=on_hand, reserved=1 if full else 0,
        safety_stock=1 if full else 0, unavailable=4 if full else 0, incoming=5 if full else 0,
        allocations=allocations,
    )  # fmt: skip


@pytest.mark.parametrize(("allocations", "on_hand"), [({"LIVE-1": 3, "LIVE-2": 1}, -2), ({}, 0)])
def test_a_stock_movement_is_mapped_field_by_field(
    allocations: dict[str, int], on_hand: int
) -> None:
    """Every field of StockMoved and its levels, and the source; the levels are present even
    when all zero (a reader tells an emptied item from a missing one)."""
    event = moved(allocations, on_hand)
    outgoing = to_outgoing(stored(event), MAPPER, "Retail", lambda code: STORE)
    assert outgoing is not None
    assert (outgoing.topic, outgoing.key) == (STOCK_TOPIC, b"TINA-30")
    allocated = sum(allocations.values())
    expected = header(event)
    expected.source.CopyFrom(events_pb2.Source(
        channel=common_pb2.CHANNEL_STORE, location="STORE-1", district="Dongcheng"
    ))  # fmt: skip
    expected.stock_moved.CopyFrom(events_pb2.StockMoved(
        sku="TINA-30", location="STORE-1", reason="sold", quantity=2, reference="R-1",
        campaign=event.campaign, went_negative=on_hand < 0,
        levels=events_pb2.StockLevels(
            on_hand=on_hand, reserved=event.reserved, safety_stock=event.safety_stock,
            unavailable=event.unavailable, incoming=event.incoming, allocated=allocated,
            available=on_hand - event.reserved - event.safety_stock - event.unavailable
            - allocated,
        ),
    ))  # fmt: skip
    assert outgoing.envelope.SerializeToString() == expected.SerializeToString()
    assert outgoing.envelope.stock_moved.HasField("levels")


def test_a_reference_stored_as_a_uuid_is_sent_as_its_text() -> None:
    reference = uuid4()
    outgoing = to_outgoing(stored(moved({}, 1, reference)), MAPPER, "Retail", lambda c: None)
    assert outgoing is not None
    assert outgoing.envelope.stock_moved.reference == str(reference)


def test_a_flash_batchs_orders_keep_their_members_and_campaigns() -> None:
    orders: list[tuple[str, str, int, str]] = [
        ("F-1", "", 1, ""), ("F-2", "M-7", 2, ""), ("F-3", "", 1, "LIVE-1"),
        ("F-4", "M-8", 3, "LIVE-1"),
    ]  # fmt: skip
    event = FlashBatch.Confirmed(  # type: ignore[attr-defined]  # made by @event
        originator_id=uuid4(), originator_version=1, timestamp=datetime.now(UTC),
        originator_topic="retail.FlashBatch", sku="TINA-30", location="ONLINE",
        unit_price=Money(100, "CNY"), tax_rate_bp=1300, orders=[list(o) for o in orders],
    )  # fmt: skip
    outgoing = to_outgoing(stored(event), MAPPER, "Retail", lambda code: None)
    assert outgoing is not None
    assert (outgoing.topic, outgoing.key) == (ORDERS_TOPIC, b"flash/TINA-30@ONLINE")
    expected = header(event)
    expected.source.location = "ONLINE"
    expected.flash_batch_confirmed.CopyFrom(events_pb2.FlashBatchConfirmed(
        batch_id=str(event.originator_id), sku="TINA-30", location="ONLINE",
        unit_price=common_pb2.Money(minor_units=100, currency="CNY"), tax_rate_bp=1300,
        orders=[events_pb2.FlashOrderLine(order_id=o, member=m, quantity=q, campaign=c)
                for o, m, q, c in orders],
    ))  # fmt: skip
    assert outgoing.envelope.SerializeToString() == expected.SerializeToString()


def test_a_compressed_store_is_read_the_same() -> None:
    event = moved({"LIVE-1": 3}, 5)
    plain = to_outgoing(stored(event), MAPPER, "Retail", lambda code: STORE)
    zipped = mapper(compressed=True)
    assert zipped.to_stored_event(event).state != MAPPER.to_stored_event(event).state
    read = to_outgoing(stored(event, events=zipped), zipped, "Retail", lambda code: STORE)
    assert plain is not None and read is not None
    assert read.envelope.SerializeToString() == plain.envelope.SerializeToString()


def test_an_event_stored_by_a_newer_class_version_is_refused_not_misread() -> None:
    record = stored(moved({}, 1))
    newer = Notification(
        id=record.id, originator_id=record.originator_id,
        originator_version=record.originator_version, topic=record.topic,
        state=record.state[:-1] + b',"class_version":2}',
    )  # fmt: skip
    with pytest.raises(StoredFormError, match="class version 2"):
        to_outgoing(newer, MAPPER, "Retail", lambda code: STORE)


def test_the_envelope_times_are_the_stored_ones_to_the_microsecond() -> None:
    event = moved({}, 1)
    outgoing = to_outgoing(stored(event), MAPPER, "Retail", lambda code: STORE)
    assert outgoing is not None
    recorded = outgoing.envelope.recorded_at
    assert recorded.ToDatetime(tzinfo=UTC) == event.timestamp
    assert recorded.ToDatetime(tzinfo=UTC) - event.timestamp == timedelta(0)


class _Reversed:
    """A stand-in cipher (the library's AES one needs a key and a crypto package)."""

    def encrypt(self, plaintext: bytes) -> bytes:
        return plaintext[::-1]

    def decrypt(self, ciphertext: bytes) -> bytes:
        return ciphertext[::-1]


def test_an_encrypted_store_is_read_the_same() -> None:
    event = moved({"LIVE-1": 3}, 5)
    ciphered = mapper()
    ciphered.cipher = _Reversed()  # type: ignore[assignment]
    plain = to_outgoing(stored(event), MAPPER, "Retail", lambda code: STORE)
    read = to_outgoing(stored(event, events=ciphered), ciphered, "Retail", lambda code: STORE)
    assert plain is not None and read is not None
    assert read.envelope.SerializeToString() == plain.envelope.SerializeToString()


def test_a_sale_in_two_currencies_is_refused_as_its_domain_event_would_be() -> None:
    line = SaleLine("TINA-30", 1, Money(100, "CNY"), Money(0, "HKD"))
    with pytest.raises(CurrencyMismatchError) as from_domain:
        _ = line.total
    event = PosSale.Recorded(  # type: ignore[attr-defined]  # made by @event
        originator_id=uuid4(), originator_version=1, timestamp=datetime.now(UTC),
        originator_topic="retail.PosSale", terminal="T-1", client_sale_id="C-1",
        location="STORE-1", staff="", occurred_at=datetime.now(UTC), lines=[line],
        payments=[], negative_stock_skus=[], shift_id="", late=False, after_shift_close=False,
    )  # fmt: skip
    with pytest.raises(CurrencyMismatchError) as from_store:
        to_outgoing(stored(event), MAPPER, "Retail", lambda code: STORE)
    assert str(from_store.value) == str(from_domain.value)

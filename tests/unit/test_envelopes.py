from __future__ import annotations

from domain.values import LocationKind
from protos.retail.v1 import common_pb2, events_pb2
from services.application import RetailApp, SaleLineInput
from services.bus import CATALOG_TOPIC, ORDERS_TOPIC, SALES_TOPIC, STOCK_TOPIC
from services.envelopes import LocationFacts, Outgoing, to_outgoing


def published(app: RetailApp) -> list[Outgoing]:
    def lookup(code: str) -> LocationFacts | None:
        location = app.get_location(code)
        return LocationFacts(location.kind, location.district)

    out = []
    for notification in app.recorder.select_notifications(start=1, limit=100):
        outgoing = to_outgoing(notification, app.mapper, "Retail", lookup)
        if outgoing is not None:
            out.append(outgoing)
    return out


def test_every_event_maps_to_an_envelope_on_its_topic_keyed_for_order(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    app.record_sale("T-1", "S-1", "STORE-1", "staff", None, [SaleLineInput("TINA-30", 3)], [])
    out = published(app)
    by_payload = {o.envelope.WhichOneof("payload"): o for o in out}
    assert by_payload["sku_registered"].topic == CATALOG_TOPIC
    moves = [o for o in out if o.envelope.HasField("stock_moved")]
    received, sold = moves[0], moves[1].envelope.stock_moved
    assert (received.topic, received.key) == (STOCK_TOPIC, b"TINA-30")
    assert received.envelope.stock_moved.reason == "received"
    assert received.envelope.stock_moved.levels.on_hand == 10
    assert received.envelope.source.channel == common_pb2.CHANNEL_STORE
    assert received.envelope.source.district == "Dongcheng"
    assert (sold.reason, sold.quantity, sold.levels.on_hand, sold.levels.available) == (
        "sold", 3, 7, 7,
    )  # fmt: skip
    sale = by_payload["sale_recorded"]
    assert sale.topic == SALES_TOPIC
    assert sale.envelope.sale_recorded.total.minor_units == 3 * 12800
    assert sale.envelope.source.terminal == "T-1"
    positions = [o.envelope.position for o in out]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)


def test_envelopes_carry_stable_ids_types_and_stream_versions(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    first, second = published(app), published(app)
    assert [o.envelope.event_id for o in first] == [o.envelope.event_id for o in second]
    stock = [o.envelope for o in first if o.topic == STOCK_TOPIC]
    assert [e.event_type for e in stock] == ["retail.StockItem.Opened", "retail.StockItem.Moved"]
    assert [e.stream_version for e in stock] == [1, 2]
    assert len({e.stream_id for e in stock}) == 1


def test_an_old_reader_ignores_fields_it_does_not_know() -> None:
    envelope = events_pb2.EventEnvelope(event_type="x", stream_version=3)
    # Field 99 (varint 7) is something a future writer added.
    data = envelope.SerializeToString() + bytes([(99 << 3) & 0x7F | 0x80, 99 >> 4, 7])
    parsed = events_pb2.EventEnvelope()
    parsed.ParseFromString(data)
    assert (parsed.event_type, parsed.stream_version) == ("x", 3)


def test_location_kinds_map_to_channels() -> None:
    assert LocationKind.POPUP.channel.value == "popup"
    assert LocationKind.ONLINE_FLAGSHIP.channel.value == "online"


def test_a_new_reader_reads_an_old_message_with_defaults_for_what_it_lacked() -> None:
    # What a first-version writer sent: SkuRegistered before tax, edition and launch fields.
    old = events_pb2.EventEnvelope(event_type="retail.Sku.Registered", stream_version=1)
    old.sku_registered.sku, old.sku_registered.name = "A-1", "Tina"
    old.sku_registered.list_price.minor_units = 100
    new = events_pb2.EventEnvelope.FromString(old.SerializeToString())
    assert new.sku_registered.sku == "A-1"
    assert new.sku_registered.member_limit == 0 and not new.sku_registered.member_only
    assert not new.sku_registered.HasField("launch_at")


def test_write_side_bookkeeping_stays_off_kafka_and_everything_else_is_mapped(
    app: RetailApp,
) -> None:
    from domain.online import ReservedLine  # noqa: PLC0415
    from domain.shifts import ZTotal  # noqa: PLC0415
    from domain.values import (  # noqa: PLC0415
        CampaignKind,
        Money,
        PaymentMethod,
    )

    app.receive_stock("TINA-30", "ONLINE", 10, "DN")
    app.start_campaign("LIVE", CampaignKind.LIVESTREAM, "ONLINE", {"TINA-30": 2})
    app.reserve("O-1", "M-1", "ONLINE", [ReservedLine("TINA-30", 1)])
    app.confirm_reservation("O-1")
    app.end_campaign("LIVE")
    app.open_shift("T-1", "SH-1", "STORE-1", "s", Money(0, "CNY"))
    app.close_shift("T-1", "SH-1", [ZTotal(PaymentMethod.CASH, Money(0, "CNY"))], Money(0, "CNY"))
    app.dispatch_transfer("TR-1", "ONLINE", "STORE-1", {"TINA-30": 1})
    app.receive_transfer("TR-1", {})
    payloads = {o.envelope.WhichOneof("payload") for o in published(app)}
    assert {
        "campaign_started", "campaign_ended", "reservation_placed", "reservation_settled",
        "shift_opened", "shift_closed", "transfer_dispatched", "transfer_received",
    } <= payloads  # fmt: skip


def test_every_event_of_a_published_stream_is_published_so_readers_see_no_false_gap(
    app: RetailApp,
) -> None:
    app.register_location("POPUP-9", LocationKind.POPUP, "P9", "Xi'an", "Yanta")
    app.receive_stock("TINA-30", "POPUP-9", 2, "DN")
    app.open_popup("POPUP-9")
    app.record_sale("T-9", "S-1", "POPUP-9", "", None, [SaleLineInput("TINA-30", 1)], [])
    app.dispatch_transfer("TR-9", "POPUP-9", "STORE-1", {"TINA-30": 1})
    app.start_closing_popup("POPUP-9")
    app.close_popup("POPUP-9", {})
    versions: dict[str, list[int]] = {}
    for outgoing in published(app):
        envelope = outgoing.envelope
        versions.setdefault(envelope.stream_id, []).append(envelope.stream_version)
    for stream, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), stream


def test_a_flash_batch_is_one_envelope_and_one_online_fact_per_purchase(app: RetailApp) -> None:
    from projections.builders import FINANCE_BUILDERS  # noqa: PLC0415
    from services.flash import FlashSales  # noqa: PLC0415

    app.receive_stock("TINA-30", "ONLINE", 5, "DN")
    flash = FlashSales(app)
    try:
        flash.buy("F-1", "TINA-30", "ONLINE", "", 2)
    finally:
        flash.stop()
    out = published(app)
    batch = next(o for o in out if o.envelope.HasField("flash_batch_confirmed"))
    confirmed = batch.envelope.flash_batch_confirmed
    assert batch.topic == ORDERS_TOPIC
    assert [(o.order_id, o.quantity) for o in confirmed.orders] == [("F-1", 2)]
    assert (confirmed.sku, confirmed.unit_price.minor_units) == ("TINA-30", 12800)
    moved = [o.envelope.stock_moved for o in out if o.envelope.HasField("stock_moved")][-1]
    assert (moved.reason, moved.quantity, moved.reference) == (
        "sold_online", 2, f"flash-batch:{confirmed.batch_id}",
    )  # fmt: skip
    (facts,) = FINANCE_BUILDERS["flash_batch_confirmed"](batch.envelope)
    (fact,) = facts.named()
    assert (fact["sale_id"], fact["units"], fact["gross_minor"], fact["channel"]) == (
        "F-1", 2, 2 * 12800, "online",
    )  # fmt: skip


def test_fast_event_ids_and_times_equal_the_library_ones() -> None:
    import random  # noqa: PLC0415
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415
    from uuid import uuid4, uuid5  # noqa: PLC0415

    from google.protobuf.timestamp_pb2 import Timestamp  # noqa: PLC0415

    from domain.ids import NAMESPACE  # noqa: PLC0415
    from projections.builders import day_and_hour, local_day_and_hour, utc  # noqa: PLC0415
    from services.envelopes import event_id_text, timestamp  # noqa: PLC0415

    rng = random.Random(7)
    for _ in range(2000):
        stream, version = uuid4(), rng.randint(1, 10**6)
        assert event_id_text(str(stream), version) == str(
            uuid5(NAMESPACE, f"event/{stream}/{version}")
        )
        moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randint(0, 10**8), microseconds=rng.randint(0, 999_999)
        )
        expected = Timestamp()
        expected.FromDatetime(moment)
        assert timestamp(moment) == expected
        assert utc(expected) == moment
        assert day_and_hour(expected) == local_day_and_hour(moment)

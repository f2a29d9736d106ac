from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.builders import UnknownEventError, rows_for
from protos.retail.v1 import common_pb2, events_pb2


def test_a_stock_movement_sets_the_on_hand_it_carries() -> None:
    envelope = events_pb2.EventEnvelope(position=9)
    envelope.stock_moved.CopyFrom(
        events_pb2.StockMoved(
            sku="A", location="S", reason="sold", quantity=3,
            levels=events_pb2.StockLevels(on_hand=7, reserved=2, available=5),
        )
    )  # fmt: skip
    (row,) = rows_for(envelope)
    assert (row.table, row.key) == ("stock_view", ("A", "S"))
    (values,) = row.named()
    assert (values["on_hand"], values["reserved"], values["available"]) == (7, 2, 5)
    assert values["position"] == 9


def test_a_location_registration_gives_its_kind_and_channel() -> None:
    envelope = events_pb2.EventEnvelope()
    envelope.location_registered.CopyFrom(
        events_pb2.LocationRegistered(
            location="P", kind=common_pb2.LOCATION_KIND_POPUP, city="Shanghai", district="Pudong"
        )
    )
    (row,) = rows_for(envelope)
    (values,) = row.named()
    assert (values["kind"], values["channel"]) == ("popup", "popup")


def test_an_envelope_without_a_known_payload_is_refused() -> None:
    with pytest.raises(UnknownEventError):
        rows_for(events_pb2.EventEnvelope(event_type="retail.Future.Thing"))


@settings(max_examples=200, deadline=None)
@given(
    price=st.integers(min_value=0, max_value=10**9),
    rate=st.sampled_from([0, 300, 600, 900, 1300]),
    orders=st.lists(
        st.tuples(st.integers(min_value=1, max_value=50), st.sampled_from(["", "LIVE-1", "M-2"])),
        min_size=1, max_size=40,
    ),
)  # fmt: skip
def test_a_flash_batch_gives_each_order_the_fact_it_would_have_alone(
    price: int, rate: int, orders: list[tuple[int, str]]
) -> None:
    from projections.builders import _fact, _when  # noqa: PLC0415

    envelope = events_pb2.EventEnvelope(position=41, event_id="e-1")
    envelope.flash_batch_confirmed.CopyFrom(
        events_pb2.FlashBatchConfirmed(
            batch_id="B", sku="TINA-30", location="ONLINE", tax_rate_bp=rate,
            unit_price=common_pb2.Money(minor_units=price, currency="CNY"),
            orders=[
                events_pb2.FlashOrderLine(order_id=f"F-{n}", quantity=quantity, campaign=campaign)
                for n, (quantity, campaign) in enumerate(orders)
            ],
        )
    )  # fmt: skip
    (row,) = rows_for(envelope)
    assert row.values.shared[0] == _when(envelope).ids  # type: ignore[union-attr]
    assert row.values.own == [  # type: ignore[union-attr]
        _fact(n, f"F-{n}", "TINA-30", campaign, quantity, price * quantity, 0, rate, "CNY")
        for n, (quantity, campaign) in enumerate(orders)
    ]


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=10**7),
            st.integers(min_value=0, max_value=10**5), st.sampled_from([0, 600, 1300]),
        ),
        min_size=0, max_size=6,
    ),
    payments=st.integers(min_value=0, max_value=2),
)  # fmt: skip
def test_a_sale_gives_its_view_a_fact_per_line_and_a_fact_per_payment(
    lines: list[tuple[int, int, int, int]], payments: int
) -> None:
    from projections.builders import _fact, _when  # noqa: PLC0415

    envelope = events_pb2.EventEnvelope(position=7, event_id="e-2", stream_version=1)
    envelope.occurred_at.seconds = 1_770_000_000
    sale = envelope.sale_recorded
    sale.sale_id, sale.terminal, sale.location, sale.shift_id = "S-1", "T-1", "STORE-1", "SH-1"
    for n, (quantity, price, discount, rate) in enumerate(lines):
        sale.lines.add(
            sku=f"SKU-{n}", quantity=quantity, tax_rate_bp=rate,
            unit_price=common_pb2.Money(minor_units=price, currency="CNY"),
            discount=common_pb2.Money(minor_units=discount, currency="CNY"),
        )  # fmt: skip
    for n in range(payments):
        sale.payments.add(reference=f"R-{n}", amount=common_pb2.Money(minor_units=n + 1))
    sale.total.minor_units = 99
    rows = rows_for(envelope)
    when = _when(envelope)
    view, *rest = rows
    assert view.table == "sale_view" and isinstance(view.values, dict)
    assert view.values["units"] == sum(quantity for quantity, *_ in lines)
    assert (view.values["total_minor"], view.values["position"]) == (99, 7)
    facts = [row for row in rest if row.table == "sales_fact"]
    assert [row.table for row in rest].count("payment_fact") == payments
    if not lines:
        assert not facts
        return
    (facts_row,) = facts
    assert facts_row.values.own == [  # type: ignore[union-attr]
        _fact(n, "S-1", f"SKU-{n}", "", quantity, price * quantity, discount, rate, "CNY")
        for n, (quantity, price, discount, rate) in enumerate(lines)
    ]
    shared = facts_row.values.shared  # type: ignore[union-attr]
    assert shared[:3] + shared[5:7] == (when.ids, "sale", "STORE-1", "T-1", "SH-1")
    assert shared[-1] == 7

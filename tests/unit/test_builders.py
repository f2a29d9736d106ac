from __future__ import annotations

import pytest

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

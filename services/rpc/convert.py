"""Translation between protobuf messages and the domain's values: transports stay dumb."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from domain.errors import InvalidValueError
from domain.sales import Payment
from domain.stock import Levels
from domain.values import (
    AdjustmentReason,
    CampaignKind,
    LocationKind,
    Money,
    PaymentMethod,
    PopupStatus,
)
from protos.retail.v1 import common_pb2, pos_pb2
from services.application import SaleLineInput
from services.envelopes import KIND_TO_PROTO, PAYMENT_TO_PROTO

E = TypeVar("E")

KIND_FROM_PROTO = {v: k for k, v in KIND_TO_PROTO.items()}
PAYMENT_FROM_PROTO = {v: k for k, v in PAYMENT_TO_PROTO.items()}


def money_in(field: str, value: common_pb2.Money) -> Money:
    currency = value.currency or "CNY"
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise InvalidValueError(f"{field}.currency", f"{currency!r} is not an ISO 4217 code")
    return Money(value.minor_units, currency)


def optional_money_in(field: str, holder: object, name: str) -> Money | None:
    if not holder.HasField(name):  # type: ignore[attr-defined]
        return None
    return money_in(field, getattr(holder, name))


def money_out(value: Money) -> common_pb2.Money:
    return common_pb2.Money(minor_units=value.minor_units, currency=value.currency)


def _choice(field: str, value: int, table: Mapping[Any, E], choices: str) -> E:
    """A proto enum value as the domain's; unset or unknown names the field and the choices."""
    chosen = table.get(value)
    if chosen is None:
        raise InvalidValueError(field, f"is required ({choices})")
    return chosen


def kind_in(field: str, value: common_pb2.LocationKind.ValueType) -> LocationKind:
    return _choice(
        field, value, KIND_FROM_PROTO, "online flagship, warehouse, partner store or pop-up"
    )


def payment_method_in(field: str, value: common_pb2.PaymentMethod.ValueType) -> PaymentMethod:
    return _choice(field, value, PAYMENT_FROM_PROTO, "cash, Alipay, WeChat Pay or bank card")


def timestamp_in(holder: object, name: str) -> datetime | None:
    if not holder.HasField(name):  # type: ignore[attr-defined]
        return None
    value: Timestamp = getattr(holder, name)
    return value.ToDatetime(tzinfo=UTC)


def timestamp_out(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def sale_lines_in(lines: Iterable[pos_pb2.SaleLineInput]) -> list[SaleLineInput]:
    result = []
    for index, line in enumerate(lines):
        field = f"lines[{index}]"
        result.append(
            SaleLineInput(
                sku=line.sku,
                quantity=line.quantity,
                unit_price=optional_money_in(f"{field}.unit_price", line, "unit_price"),
                discount=optional_money_in(f"{field}.discount", line, "discount"),
            )
        )
    return result


def payments_in(payments: Iterable[pos_pb2.PaymentInput]) -> list[Payment]:
    return [
        Payment(
            payment_method_in(f"payments[{index}].method", payment.method),
            money_in(f"payments[{index}].amount", payment.amount),
            payment.reference.strip(),
        )
        for index, payment in enumerate(payments)
    ]


def sku_quantities_in(field: str, lines: Iterable[common_pb2.SkuQuantity]) -> dict[str, int]:
    """Lines of SKU and quantity as a mapping; a SKU named twice is refused."""
    result: dict[str, int] = {}
    for index, line in enumerate(lines):
        if line.sku in result:
            raise InvalidValueError(f"{field}[{index}].sku", f"{line.sku!r} appears twice")
        result[line.sku] = line.quantity
    return result


def sku_quantities_out(quantities: dict[str, int]) -> list[common_pb2.SkuQuantity]:
    return [common_pb2.SkuQuantity(sku=s, quantity=q) for s, q in sorted(quantities.items())]


def levels_out(levels: Levels) -> common_pb2.Levels:
    return common_pb2.Levels(
        on_hand=levels.on_hand, reserved=levels.reserved, safety_stock=levels.safety_stock,
        unavailable=levels.unavailable, incoming=levels.incoming, allocated=levels.allocated,
        available=levels.available,
    )  # fmt: skip


ADJUSTMENT_FROM_PROTO = {
    common_pb2.ADJUSTMENT_REASON_COUNT: AdjustmentReason.COUNT,
    common_pb2.ADJUSTMENT_REASON_DAMAGE: AdjustmentReason.DAMAGE,
    common_pb2.ADJUSTMENT_REASON_SHRINKAGE: AdjustmentReason.SHRINKAGE,
    common_pb2.ADJUSTMENT_REASON_FOUND: AdjustmentReason.FOUND,
    common_pb2.ADJUSTMENT_REASON_WRITE_OFF: AdjustmentReason.WRITE_OFF,
    common_pb2.ADJUSTMENT_REASON_HOLD: AdjustmentReason.HOLD,
    common_pb2.ADJUSTMENT_REASON_RELEASE_HOLD: AdjustmentReason.RELEASE_HOLD,
}
CAMPAIGN_TO_PROTO = {
    CampaignKind.LIVESTREAM: common_pb2.CAMPAIGN_KIND_LIVESTREAM,
    CampaignKind.MEMBER_DROP: common_pb2.CAMPAIGN_KIND_MEMBER_DROP,
    CampaignKind.PRESALE: common_pb2.CAMPAIGN_KIND_PRESALE,
}
CAMPAIGN_FROM_PROTO = {v: k for k, v in CAMPAIGN_TO_PROTO.items()}
POPUP_TO_PROTO = {
    PopupStatus.PLANNED: common_pb2.POPUP_STATUS_PLANNED,
    PopupStatus.OPEN: common_pb2.POPUP_STATUS_OPEN,
    PopupStatus.CLOSING: common_pb2.POPUP_STATUS_CLOSING,
    PopupStatus.CLOSED: common_pb2.POPUP_STATUS_CLOSED,
}


def adjustment_in(field: str, value: common_pb2.AdjustmentReason.ValueType) -> AdjustmentReason:
    return _choice(
        field, value, ADJUSTMENT_FROM_PROTO,
        "count, damage, shrinkage, found, write-off, hold, release hold",
    )  # fmt: skip


def campaign_kind_in(field: str, value: common_pb2.CampaignKind.ValueType) -> CampaignKind:
    return _choice(field, value, CAMPAIGN_FROM_PROTO, "livestream, member drop or pre-sale")

"""Translation between protobuf messages and the domain's values: transports stay dumb."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from domain.errors import InvalidValueError
from domain.sales import Payment
from domain.values import LocationKind, Money, PaymentMethod
from protos.retail.v1 import common_pb2, pos_pb2
from services.application import SaleLineInput
from services.envelopes import KIND_TO_PROTO, PAYMENT_TO_PROTO

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


def kind_in(field: str, value: common_pb2.LocationKind.ValueType) -> LocationKind:
    kind = KIND_FROM_PROTO.get(value)
    if kind is None:
        raise InvalidValueError(
            field, "is required (online flagship, warehouse, partner store or pop-up)"
        )
    return kind


def payment_method_in(field: str, value: common_pb2.PaymentMethod.ValueType) -> PaymentMethod:
    method = PAYMENT_FROM_PROTO.get(value)
    if method is None:
        raise InvalidValueError(field, "is required (cash, Alipay, WeChat Pay or bank card)")
    return method


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
        )
        for index, payment in enumerate(payments)
    ]

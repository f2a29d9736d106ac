"""JSON transcodings for the domain's value objects inside stored events."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

from domain.online import ReservedLine
from domain.sales import Payment, ReturnLine, SaleLine
from domain.shifts import ZTotal
from domain.values import Money, PaymentMethod


class MoneyAsDict(Transcoding):
    type = Money
    name = "money"

    def encode(self, obj: Money) -> dict[str, Any]:
        return {"m": obj.minor_units, "c": obj.currency}

    def decode(self, data: dict[str, Any]) -> Money:
        return Money(int(data["m"]), str(data["c"]))


class SaleLineAsDict(Transcoding):
    type = SaleLine
    name = "sale_line"

    def encode(self, obj: SaleLine) -> dict[str, Any]:
        return {"sku": obj.sku, "q": obj.quantity, "p": obj.unit_price, "d": obj.discount}

    def decode(self, data: dict[str, Any]) -> SaleLine:
        return SaleLine(data["sku"], int(data["q"]), data["p"], data["d"])


class PaymentAsDict(Transcoding):
    type = Payment
    name = "payment"

    def encode(self, obj: Payment) -> dict[str, Any]:
        return {"m": obj.method.value, "a": obj.amount}

    def decode(self, data: dict[str, Any]) -> Payment:
        return Payment(PaymentMethod(data["m"]), data["a"])


class ReturnLineAsDict(Transcoding):
    type = ReturnLine
    name = "return_line"

    def encode(self, obj: ReturnLine) -> dict[str, Any]:
        return {"sku": obj.sku, "q": obj.quantity, "r": obj.refund}

    def decode(self, data: dict[str, Any]) -> ReturnLine:
        return ReturnLine(data["sku"], int(data["q"]), data["r"])


class ReservedLineAsDict(Transcoding):
    type = ReservedLine
    name = "reserved_line"

    def encode(self, obj: ReservedLine) -> dict[str, Any]:
        return {"sku": obj.sku, "q": obj.quantity}

    def decode(self, data: dict[str, Any]) -> ReservedLine:
        return ReservedLine(data["sku"], int(data["q"]))


class ZTotalAsDict(Transcoding):
    type = ZTotal
    name = "z_total"

    def encode(self, obj: ZTotal) -> dict[str, Any]:
        return {"m": obj.method.value, "a": obj.amount}

    def decode(self, data: dict[str, Any]) -> ZTotal:
        return ZTotal(PaymentMethod(data["m"]), data["a"])


def register_domain_transcodings(transcoder: JSONTranscoder) -> None:
    for transcoding in (
        MoneyAsDict(), SaleLineAsDict(), PaymentAsDict(), ReturnLineAsDict(),
        ReservedLineAsDict(), ZTotalAsDict(),
    ):  # fmt: skip
        transcoder.register(transcoding)

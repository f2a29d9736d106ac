"""JSON transcodings for the domain's value objects inside stored events."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

from domain.finance import SettlementLine
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
        return {
            "sku": obj.sku, "q": obj.quantity, "p": obj.unit_price, "d": obj.discount,
            "t": obj.tax_rate_bp,
        }  # fmt: skip

    def decode(self, data: dict[str, Any]) -> SaleLine:
        return SaleLine(data["sku"], int(data["q"]), data["p"], data["d"], int(data.get("t", 0)))


class PaymentAsDict(Transcoding):
    type = Payment
    name = "payment"

    def encode(self, obj: Payment) -> dict[str, Any]:
        return {"m": obj.method.value, "a": obj.amount, "r": obj.reference}

    def decode(self, data: dict[str, Any]) -> Payment:
        return Payment(PaymentMethod(data["m"]), data["a"], data.get("r", ""))


class ReturnLineAsDict(Transcoding):
    type = ReturnLine
    name = "return_line"

    def encode(self, obj: ReturnLine) -> dict[str, Any]:
        return {"sku": obj.sku, "q": obj.quantity, "r": obj.refund, "t": obj.tax_rate_bp}

    def decode(self, data: dict[str, Any]) -> ReturnLine:
        return ReturnLine(data["sku"], int(data["q"]), data["r"], int(data.get("t", 0)))


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


class SettlementLineAsDict(Transcoding):
    type = SettlementLine
    name = "settlement_line"

    def encode(self, obj: SettlementLine) -> dict[str, Any]:
        return {"r": obj.reference, "m": obj.method.value, "a": obj.amount, "t": obj.settled_at}

    def decode(self, data: dict[str, Any]) -> SettlementLine:
        return SettlementLine(data["r"], PaymentMethod(data["m"]), data["a"], data["t"])


def register_domain_transcodings(transcoder: JSONTranscoder) -> None:
    for transcoding in (
        MoneyAsDict(), SaleLineAsDict(), PaymentAsDict(), ReturnLineAsDict(),
        ReservedLineAsDict(), ZTotalAsDict(), SettlementLineAsDict(),
    ):  # fmt: skip
        transcoder.register(transcoding)

"""Value objects and the validation of primitive input shared by every aggregate."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from domain.errors import CurrencyMismatchError, InvalidValueError

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def require_code(field: str, value: str) -> str:
    """A SKU, location, terminal or sale code: 1-64 letters, digits, '.', '_', ':' or '-'."""
    if not value:
        raise InvalidValueError(field, "is required")
    if not _CODE.match(value):
        raise InvalidValueError(
            field, f"{value!r} is not a valid code (1-64 letters, digits, '.', '_', ':', '-')"
        )
    return value


def require_text(field: str, value: str, *, max_length: int = 200) -> str:
    text = value.strip()
    if not text:
        raise InvalidValueError(field, "is required")
    if len(text) > max_length:
        raise InvalidValueError(field, f"is longer than {max_length} characters")
    return text


def require_positive(field: str, value: int) -> int:
    if value < 1:
        raise InvalidValueError(field, f"must be at least 1, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Money:
    """An amount as an integer count of the currency's minor units (fen for CNY)."""

    minor_units: int
    currency: str

    def __post_init__(self) -> None:
        if not _CURRENCY.match(self.currency):
            raise InvalidValueError("currency", f"{self.currency!r} is not an ISO 4217 code")

    @staticmethod
    def zero(currency: str) -> Money:
        return Money(0, currency)

    def plus(self, other: Money, *, field: str = "amount") -> Money:
        if other.currency != self.currency:
            raise CurrencyMismatchError(field, self.currency, other.currency)
        return Money(self.minor_units + other.minor_units, self.currency)

    def times(self, factor: int) -> Money:
        return Money(self.minor_units * factor, self.currency)

    def minus(self, other: Money, *, field: str = "amount") -> Money:
        return self.plus(Money(-other.minor_units, other.currency), field=field)


class LocationKind(StrEnum):
    ONLINE_FLAGSHIP = "online_flagship"
    WAREHOUSE = "warehouse"
    PARTNER_STORE = "partner_store"
    POPUP = "popup"

    @property
    def channel(self) -> Channel:
        return _CHANNEL_OF_KIND[self]

    @property
    def sells_at_till(self) -> bool:
        return self in (LocationKind.PARTNER_STORE, LocationKind.POPUP)


class Channel(StrEnum):
    ONLINE = "online"
    WAREHOUSE = "warehouse"
    STORE = "store"
    POPUP = "popup"


_CHANNEL_OF_KIND = {
    LocationKind.ONLINE_FLAGSHIP: Channel.ONLINE,
    LocationKind.WAREHOUSE: Channel.WAREHOUSE,
    LocationKind.PARTNER_STORE: Channel.STORE,
    LocationKind.POPUP: Channel.POPUP,
}


class PaymentMethod(StrEnum):
    CASH = "cash"
    ALIPAY = "alipay"
    WECHAT_PAY = "wechat_pay"
    BANK_CARD = "bank_card"


class AdjustmentReason(StrEnum):
    """Why on hand changed outside a receipt, sale, return or transfer."""

    COUNT = "count"  # a stock count set on hand to what was counted
    DAMAGE = "damage"  # units found damaged: kept on hand, but unavailable
    SHRINKAGE = "shrinkage"  # units gone (theft, loss)
    FOUND = "found"  # units found that stock did not show
    WRITE_OFF = "write_off"  # damaged units disposed of
    HOLD = "hold"  # quality hold: unavailable until released
    RELEASE_HOLD = "release_hold"


class PopupStatus(StrEnum):
    PLANNED = "planned"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class CampaignKind(StrEnum):
    LIVESTREAM = "livestream"
    MEMBER_DROP = "member_drop"
    PRESALE = "presale"


class ReservationStatus(StrEnum):
    HELD = "held"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


def require_non_negative(field: str, value: int) -> int:
    if value < 0:
        raise InvalidValueError(field, f"must not be negative, got {value}")
    return value

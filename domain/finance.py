"""Finance on the write side: closing a business day, and importing a provider's settlement."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidStateError, InvalidValueError
from domain.ids import stream_id
from domain.values import Money, PaymentMethod, require_code

DAY_CLOSED = "retail.BusinessDay.Closed"
SETTLEMENT_IMPORTED = "retail.SettlementBatch.Imported"

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def require_day(field: str, value: str) -> str:
    if not _DAY.match(value):
        raise InvalidValueError(field, f"{value!r} is not a date like 2026-02-06")
    return value


class BusinessDay(Aggregate):
    """A location's business day (Asia/Shanghai). Once closed, what arrives later for it shows
    as an adjustment to the report, never as a silent change."""

    TOPIC = "retail.BusinessDay"

    class Created(Aggregate.Created):
        TOPIC = "retail.BusinessDay.Created"

    @staticmethod
    def create_id(location: str, day: str) -> UUID:
        return stream_id("business-day", location, day)

    @event("Closed", topic=DAY_CLOSED)
    def __init__(self, location: str, day: str, closed_at: datetime) -> None:
        self.location = location
        self.day = day
        self.closed_at = closed_at

    @classmethod
    def close(cls, location: str, day: str, closed_at: datetime) -> BusinessDay:
        require_code("location", location)
        require_day("business_day", day)
        return cls(location=location, day=day, closed_at=closed_at)


@dataclass(frozen=True, slots=True)
class SettlementLine:
    """One line of a payment provider's settlement file."""

    reference: str
    method: PaymentMethod
    amount: Money
    settled_at: datetime


class SettlementBatch(Aggregate):
    TOPIC = "retail.SettlementBatch"

    class Created(Aggregate.Created):
        TOPIC = "retail.SettlementBatch.Created"

    @staticmethod
    def create_id(batch: str) -> UUID:
        return stream_id("settlement", batch)

    @classmethod
    def take(cls, batch: str, provider: str, lines: list[SettlementLine]) -> SettlementBatch:
        require_code("batch_id", batch)
        if not lines:
            raise InvalidValueError("lines", "a settlement file has at least one line")
        references = [line.reference for line in lines]
        if len(set(references)) != len(references):
            raise InvalidValueError("lines", "a transaction reference appears twice")
        for index, line in enumerate(lines):
            require_code(f"lines[{index}].reference", line.reference)
            if line.settled_at.tzinfo is None:
                raise InvalidValueError(f"lines[{index}].settled_at", "must carry a timezone")
        return cls(batch=batch, provider=provider.strip(), lines=list(lines))

    @event("Imported", topic=SETTLEMENT_IMPORTED)
    def __init__(self, batch: str, provider: str, lines: list[SettlementLine]) -> None:
        self.batch = batch
        self.provider = provider
        self.lines = list(lines)

    def check_same(self, provider: str, lines: list[SettlementLine]) -> None:
        if (self.provider, self.lines) != (provider.strip(), lines):
            raise InvalidStateError(
                f"settlement batch {self.batch!r} was imported with other lines"
            )

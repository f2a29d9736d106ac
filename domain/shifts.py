"""POS terminals and their shifts: opened with a cash float, closed with a Z-report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidStateError, InvalidValueError, TerminalElsewhereError
from domain.ids import FlatCopy, stream_id
from domain.values import Money, PaymentMethod, require_code

TERMINAL_REGISTERED = "retail.Terminal.Registered"
TERMINAL_SHIFT_OPENED = "retail.Terminal.ShiftOpened"
TERMINAL_SHIFT_CLOSED = "retail.Terminal.ShiftClosed"
SHIFT_OPENED = "retail.Shift.Opened"
SHIFT_CLOSED = "retail.Shift.Closed"


@dataclass(frozen=True, slots=True)
class ZTotal:
    """The terminal's own total for one payment method, as printed on its Z-report."""

    method: PaymentMethod
    amount: Money


class Terminal(FlatCopy, Aggregate):
    """A till at one location; knows which of its shifts is open."""

    TOPIC = "retail.Terminal"

    class Created(Aggregate.Created):
        TOPIC = "retail.Terminal.Created"

    @staticmethod
    def create_id(terminal: str) -> UUID:
        return stream_id("terminal", terminal)

    @event("Registered", topic=TERMINAL_REGISTERED)
    def __init__(self, terminal: str, location: str) -> None:
        self.terminal = terminal
        self.location = location
        self.open_shift = ""
        self.last_closed_at: datetime | None = None

    def check_at(self, location: str) -> None:
        if location != self.location:
            raise TerminalElsewhereError(self.terminal, self.location, location)

    def start_shift(self, shift_id: str) -> None:
        if self.open_shift:
            raise InvalidStateError(
                f"terminal {self.terminal!r} already has shift {self.open_shift!r} open: close it "
                "first"
            )
        self._shift_opened(shift_id=shift_id)

    def end_shift(self, shift_id: str, closed_at: datetime) -> None:
        self._shift_closed(shift_id=shift_id, closed_at=closed_at)

    @event("ShiftOpened", topic=TERMINAL_SHIFT_OPENED)
    def _shift_opened(self, shift_id: str) -> None:
        self.open_shift = shift_id

    @event("ShiftClosed", topic=TERMINAL_SHIFT_CLOSED)
    def _shift_closed(self, shift_id: str, closed_at: datetime) -> None:
        self.open_shift = ""
        self.last_closed_at = closed_at


class Shift(Aggregate):
    """One shift at one terminal, from the cash float to the Z-report."""

    TOPIC = "retail.Shift"

    class Created(Aggregate.Created):
        TOPIC = "retail.Shift.Created"

    @staticmethod
    def create_id(terminal: str, shift_id: str) -> UUID:
        return stream_id("shift", terminal, shift_id)

    @classmethod
    def start(
        cls, terminal: str, shift_id: str, location: str, staff: str, cash_float: Money,
        opened_at: datetime,
    ) -> Shift:  # fmt: skip
        require_code("terminal_id", terminal)
        require_code("shift_id", shift_id)
        if cash_float.minor_units < 0:
            raise InvalidValueError("cash_float", "must not be negative")
        return cls(terminal=terminal, shift_id=shift_id, location=location, staff=staff.strip(),
                   cash_float=cash_float, opened_at=opened_at)  # fmt: skip

    @event("Opened", topic=SHIFT_OPENED)
    def __init__(
        self, terminal: str, shift_id: str, location: str, staff: str, cash_float: Money,
        opened_at: datetime,
    ) -> None:  # fmt: skip
        self.terminal = terminal
        self.shift_id = shift_id
        self.location = location
        self.staff = staff
        self.cash_float = cash_float
        self.opened_at = opened_at
        self.closed_at: datetime | None = None
        self.z_report: list[ZTotal] = []
        self.counted_cash: Money | None = None

    def close(self, z_report: list[ZTotal], counted_cash: Money, closed_at: datetime) -> None:
        if self.closed_at is not None:
            raise InvalidStateError(f"shift {self.shift_id!r} is already closed")
        methods = [total.method for total in z_report]
        if len(set(methods)) != len(methods):
            raise InvalidValueError("z_report", "each payment method may appear once")
        if counted_cash.minor_units < 0:
            raise InvalidValueError("counted_cash", "must not be negative")
        self._closed(
            terminal=self.terminal, shift_id=self.shift_id, location=self.location,
            z_report=list(z_report), counted_cash=counted_cash, closed_at=closed_at,
        )  # fmt: skip

    @event("Closed", topic=SHIFT_CLOSED)
    def _closed(
        self, terminal: str, shift_id: str, location: str, z_report: list[ZTotal],
        counted_cash: Money, closed_at: datetime,
    ) -> None:  # fmt: skip
        self.z_report = list(z_report)
        self.counted_cash = counted_cash
        self.closed_at = closed_at

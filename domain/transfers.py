"""Transfers of stock between locations: dispatched, then received (possibly short)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidStateError, InvalidValueError
from domain.ids import stream_id
from domain.values import require_code, require_non_negative, require_positive

TRANSFER_DISPATCHED = "retail.Transfer.Dispatched"
TRANSFER_RECEIVED = "retail.Transfer.Received"


class Transfer(Aggregate):
    TOPIC = "retail.Transfer"

    class Created(Aggregate.Created):
        TOPIC = "retail.Transfer.Created"

    @staticmethod
    def create_id(code: str) -> UUID:
        return stream_id("transfer", code)

    @classmethod
    def dispatch(cls, code: str, source: str, destination: str, lines: dict[str, int]) -> Transfer:
        require_code("transfer_id", code)
        if source == destination:
            raise InvalidValueError("to_location", "a transfer goes to another location")
        if not lines:
            raise InvalidValueError("lines", "a transfer needs at least one line")
        for sku, quantity in lines.items():
            require_code("lines.sku", sku)
            require_positive(f"lines[{sku}].quantity", quantity)
        return cls(code=code, source=source, destination=destination, sent=dict(lines))

    @event("Dispatched", topic=TRANSFER_DISPATCHED)
    def __init__(self, code: str, source: str, destination: str, sent: dict[str, int]) -> None:
        self.code = code
        self.source = source
        self.destination = destination
        self.sent = dict(sent)
        self.received: dict[str, int] | None = None
        self.lost: dict[str, int] = {}

    def receive(self, received: dict[str, int]) -> dict[str, int]:
        """Books what arrived (SKUs left out arrived in full); answers what was lost in transit."""
        if self.received is not None:
            raise InvalidStateError(f"transfer {self.code!r} was already received")
        unknown = sorted(set(received) - set(self.sent))
        if unknown:
            raise InvalidValueError("lines", f"{', '.join(unknown)} was not sent on {self.code}")
        arrived = {}
        for sku, sent in self.sent.items():
            got = require_non_negative(f"lines[{sku}].quantity", received.get(sku, sent))
            if got > sent:
                raise InvalidValueError(
                    f"lines[{sku}].quantity", f"{got} received but only {sent} were sent"
                )
            arrived[sku] = got
        lost = {sku: self.sent[sku] - got for sku, got in arrived.items() if got < self.sent[sku]}
        self._received(code=self.code, destination=self.destination, received=arrived, lost=lost)
        return lost

    @event("Received", topic=TRANSFER_RECEIVED)
    def _received(
        self, code: str, destination: str, received: dict[str, int], lost: dict[str, int]
    ) -> None:
        self.received = dict(received)
        self.lost = dict(lost)

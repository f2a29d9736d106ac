"""Named domain errors: every refusal a caller can cause, each with a message a store manager reads.

The gRPC adapter maps these classes (by base class) to status codes in one table; nothing else
in the domain knows about transports.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every refusal a caller can cause."""


class InvalidValueError(DomainError):
    """Malformed input: names the field and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFoundError(DomainError):
    """The command names a thing the write side does not know."""


class UnknownSkuError(NotFoundError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"unknown SKU {sku!r}: register it in the catalogue first")
        self.sku = sku


class UnknownLocationError(NotFoundError):
    def __init__(self, location: str) -> None:
        super().__init__(f"unknown location {location!r}: register it first")
        self.location = location


class AlreadyExistsError(DomainError):
    """The identity is taken by something different."""


class SkuCodeTakenError(AlreadyExistsError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"SKU {sku!r} is already registered with different details")
        self.sku = sku


class LocationCodeTakenError(AlreadyExistsError):
    def __init__(self, location: str) -> None:
        super().__init__(f"location {location!r} is already registered with different details")
        self.location = location


class SaleIdReusedError(AlreadyExistsError):
    def __init__(self, terminal: str, client_sale_id: str) -> None:
        super().__init__(
            f"terminal {terminal!r} already posted sale {client_sale_id!r} with different "
            "contents: a retry must repeat the original sale exactly"
        )
        self.terminal = terminal
        self.client_sale_id = client_sale_id


class RuleBrokenError(DomainError):
    """A business rule refuses the command in the current state."""


class NotASellingLocationError(RuleBrokenError):
    def __init__(self, location: str, kind: str) -> None:
        super().__init__(
            f"location {location!r} is a {kind.replace('_', ' ')}: "
            "only partner stores and pop-ups post till sales"
        )
        self.location = location


class CurrencyMismatchError(RuleBrokenError):
    def __init__(self, field: str, expected: str, got: str) -> None:
        super().__init__(f"{field}: currency {got} does not match the sale's currency {expected}")
        self.field = field


class PaymentsDoNotAddUpError(RuleBrokenError):
    def __init__(self, total: int, paid: int, currency: str) -> None:
        super().__init__(
            f"payments add up to {paid} but the sale totals {total} ({currency} minor units)"
        )


class ConflictError(DomainError):
    """A concurrent write won the race; the same command retried may succeed."""


class UnknownSaleError(NotFoundError):
    def __init__(self, terminal: str, client_sale_id: str) -> None:
        super().__init__(f"terminal {terminal!r} has no sale {client_sale_id!r}")


class UnknownReservationError(NotFoundError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"no reservation for order {order_id!r}")


class UnknownCampaignError(NotFoundError):
    def __init__(self, campaign: str) -> None:
        super().__init__(f"unknown campaign {campaign!r}")


class UnknownTransferError(NotFoundError):
    def __init__(self, transfer: str) -> None:
        super().__init__(f"unknown transfer {transfer!r}")


class InsufficientStockError(RuleBrokenError):
    def __init__(self, sku: str, location: str, requested: int, available: int) -> None:
        super().__init__(
            f"only {available} of {sku} available at {location}, {requested} requested"
        )
        self.sku = sku
        self.location = location
        self.requested = requested
        self.available = available


class InvalidStateError(RuleBrokenError):
    """The thing is not in a state that allows the command (closed pop-up, expired hold...)."""


class LocationNotOpenError(InvalidStateError):
    def __init__(self, location: str, status: str, action: str = "sell") -> None:
        super().__init__(f"location {location!r} is {status}: it cannot {action} now")


class PopupStillHoldsStockError(InvalidStateError):
    def __init__(self, location: str, leftovers: dict[str, int]) -> None:
        listed = ", ".join(f"{qty} x {sku}" for sku, qty in sorted(leftovers.items()))
        super().__init__(
            f"pop-up {location!r} still holds stock ({listed}): transfer leftovers out first"
        )
        self.leftovers = leftovers


class ReturnExceedsSaleError(RuleBrokenError):
    def __init__(self, sku: str, returnable: int, requested: int) -> None:
        super().__init__(
            f"cannot return {requested} x {sku}: only {returnable} sold and not yet returned"
        )


class NotLaunchedError(RuleBrokenError):
    def __init__(self, sku: str, launch_at: str) -> None:
        super().__init__(f"{sku} launches at {launch_at}: it cannot be sold or reserved before")


class MembersOnlyError(RuleBrokenError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is for members only: sign in as a member")


class MemberLimitReachedError(RuleBrokenError):
    def __init__(self, sku: str, limit: int, held: int) -> None:
        super().__init__(f"{sku} is limited to {limit} per member; this member already has {held}")


class CampaignNotActiveError(InvalidStateError):
    def __init__(self, campaign: str, status: str) -> None:
        super().__init__(f"campaign {campaign!r} is {status}")


class ReservationExpiredError(InvalidStateError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"the reservation for order {order_id!r} has expired; reserve again")


class TerminalElsewhereError(RuleBrokenError):
    def __init__(self, terminal: str, home: str, given: str) -> None:
        super().__init__(f"terminal {terminal!r} belongs to {home!r}, not {given!r}")

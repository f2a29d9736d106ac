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

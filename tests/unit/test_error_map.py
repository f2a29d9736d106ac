from __future__ import annotations

import grpc
import pytest

from domain.errors import (
    ConflictError,
    InvalidValueError,
    NotASellingLocationError,
    SaleIdReusedError,
    UnknownLocationError,
    UnknownSkuError,
)
from services.rpc.errors import UnavailableError, status_for


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidValueError("quantity", "must be at least 1"), grpc.StatusCode.INVALID_ARGUMENT),
        (UnknownSkuError("X"), grpc.StatusCode.NOT_FOUND),
        (UnknownLocationError("X"), grpc.StatusCode.NOT_FOUND),
        (SaleIdReusedError("T", "S"), grpc.StatusCode.ALREADY_EXISTS),
        (NotASellingLocationError("WH", "warehouse"), grpc.StatusCode.FAILED_PRECONDITION),
        (ConflictError("race"), grpc.StatusCode.ABORTED),
        (UnavailableError("db down"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_each_refusal_has_its_status(error: Exception, code: grpc.StatusCode) -> None:
    assert status_for(error) is code


def test_a_programming_error_is_not_mapped_to_a_caller_status() -> None:
    assert status_for(KeyError("x")) is None

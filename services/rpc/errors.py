"""The one map from exceptions to gRPC status codes, applied to every unary method of every
servicer when the server is built (`guarded`)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from eventsourcing.persistence import OperationalError as EventStoreOperationalError
from google.protobuf.descriptor import ServiceDescriptor
from grpc import aio
from sqlalchemy.exc import OperationalError as ViewsOperationalError

from domain.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidValueError,
    NotFoundError,
    RuleBrokenError,
)
from projections.queries import ViewsBehindError
from services.desks import OverloadedError

log = logging.getLogger(__name__)

S = TypeVar("S")


class UnavailableError(Exception):
    """A dependency (event store, views, broker) cannot serve the call right now."""


# Checked in order; the first base class that matches decides the status.
STATUS_BY_ERROR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (RuleBrokenError, grpc.StatusCode.FAILED_PRECONDITION),
    (ConflictError, grpc.StatusCode.ABORTED),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (ViewsBehindError, grpc.StatusCode.UNAVAILABLE),
    (EventStoreOperationalError, grpc.StatusCode.UNAVAILABLE),
    (ViewsOperationalError, grpc.StatusCode.UNAVAILABLE),
)


def status_for(error: BaseException) -> grpc.StatusCode | None:
    for error_type, code in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return code
    return None


def _refusal(error: Exception, behavior: object) -> tuple[grpc.StatusCode, str]:
    """The status and message a failed call answers."""
    code = status_for(error)
    if code is None:
        log.exception("unexpected error in %s", getattr(behavior, "__name__", behavior))
        return grpc.StatusCode.INTERNAL, "internal error; it has been logged"
    if code is grpc.StatusCode.UNAVAILABLE and not isinstance(error, ViewsBehindError):
        log.warning("dependency unavailable: %s", error)
        return code, f"a dependency is unavailable, retry shortly: {error}"
    return code, str(error)


def _guard(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(behavior):

        async def guarded_async(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await behavior(request, context)
            except Exception as error:
                code, message = _refusal(error, behavior)
            await context.abort(code, message)

        return guarded_async

    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as error:
            code, message = _refusal(error, behavior)
        context.abort(code, message)

    return guarded


def guarded(servicer: S, service: ServiceDescriptor) -> S:
    """Wraps each unary-unary method of `service` on this servicer with the error map, before
    the servicer is registered. Done once per server instead of by a server interceptor, which
    runs for every call: measured on the flash sale, the interceptor pipeline took 14 % of the
    API process's GIL time (py-spy --gil)."""
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            continue
        setattr(servicer, method.name, _guard(getattr(servicer, method.name)))
    return servicer

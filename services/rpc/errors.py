"""The one map from exceptions to gRPC status codes, applied to every servicer by an interceptor."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from eventsourcing.persistence import OperationalError as EventStoreOperationalError
from sqlalchemy.exc import OperationalError as ViewsOperationalError

from domain.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidValueError,
    NotFoundError,
    RuleBrokenError,
)
from projections.queries import ViewsBehindError
from services.flash import OverloadedError

log = logging.getLogger(__name__)


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


def _guard(behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as error:
            code = status_for(error)
            if code is None:
                log.exception("unexpected error in %s", getattr(behavior, "__name__", behavior))
                context.abort(grpc.StatusCode.INTERNAL, "internal error; it has been logged")
            if code is grpc.StatusCode.UNAVAILABLE and not isinstance(error, ViewsBehindError):
                log.warning("dependency unavailable: %s", error)
                context.abort(code, f"a dependency is unavailable, retry shortly: {error}")
            context.abort(code, str(error))

    return guarded


class ErrorMappingInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Turns domain errors raised by any unary servicer method into their status codes."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _guard(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

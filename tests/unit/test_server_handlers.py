"""The API server registers its services as generic handlers only (services.rpc.server)."""

from __future__ import annotations

from typing import Any

import grpc

from protos.retail.v1 import stock_pb2_grpc
from services.rpc.server import _GenericHandlersOnly


class _RecordingServer:
    def __init__(self) -> None:
        self.generic: list[Any] = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: Any) -> None:
        self.registered.append(service_name)


def test_a_generated_registration_reaches_the_server_as_a_generic_handler_only() -> None:
    server = _RecordingServer()

    stock_pb2_grpc.add_StockServiceServicer_to_server(
        stock_pb2_grpc.StockServiceServicer(),  # type: ignore[abstract]
        _GenericHandlersOnly(server),  # type: ignore[arg-type]
    )

    # grpc.aio waits on one future per registered method for every call it accepts.
    assert server.registered == []
    [handler] = server.generic
    call = type("Details", (), {"method": "/retail.v1.StockService/GetStock"})()
    assert isinstance(handler, grpc.GenericRpcHandler)
    assert handler.service(call) is not None

"""The gRPC server factory: every retail.v1 service, health checking and reflection.

The server is a grpc.aio server on an event loop (uvloop's) of its own thread. The hot methods
are coroutines on that loop (FlashBuy and RecordSale wait for their desk's commit without
holding a thread; GetStock answers kept results in the loop); every other method is a plain
function that grpc runs in the server's thread pool (its `migration_thread_pool`). Measured: with a
thread per waiting buyer the flash sale stopped at about half the no-op server's rate,
whatever the desk did (docs/benchmarks.md, the group-commit peer).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, cast

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from projections.finance import FinanceQueries, SalesQueries
from projections.queries import ProgressQueries, StockQueries
from protos.retail.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    finance_pb2,
    finance_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    location_pb2,
    location_pb2_grpc,
    order_pb2,
    order_pb2_grpc,
    pos_pb2,
    pos_pb2_grpc,
    sales_pb2,
    sales_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from services.application import RetailApp
from services.flash import FlashSales
from services.rpc.errors import guarded
from services.rpc.loop import new_event_loop
from services.rpc.reports import FinanceServicer, SalesServicer
from services.rpc.servicers import (
    CatalogServicer,
    InventoryServicer,
    LocationServicer,
    OrderServicer,
    PosServicer,
    StockServicer,
)
from services.tills import TillDesk

SERVICE_NAMES = (
    catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
    location_pb2.DESCRIPTOR.services_by_name["LocationService"].full_name,
    inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name,
    order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name,
    pos_pb2.DESCRIPTOR.services_by_name["PosService"].full_name,
    stock_pb2.DESCRIPTOR.services_by_name["StockService"].full_name,
    sales_pb2.DESCRIPTOR.services_by_name["SalesService"].full_name,
    finance_pb2.DESCRIPTOR.services_by_name["FinanceService"].full_name,
)


class _GenericHandlersOnly:
    """The server as the generated `add_*_to_server` functions see it. Each registers its
    service twice: as a generic handler and as "registered methods". Only the first goes
    through: grpc.aio (1.85) keeps one pending future per registered method and, for every
    call it accepts, waits on all of them at once (asyncio.wait: each call added and removed
    a callback on every future, grpc/grpc#43461). With this server's 40-odd methods that was
    most of what GetStock cost beyond the no-op server: after a 30,000-unit flash sale (the
    backend with every role, GetStock closed loop at 64 in flight, against the no-op grpc.aio
    server taking turns with it) 4,211 and 3,540 calls/s against the no-op's 4,195 and
    4,449, at 241-291 us of the API's CPU a call; with generic handlers only 5,083 and 5,302
    against 5,210 and 4,576, at 184-195 us. The generic handlers serve the same methods."""

    def __init__(self, server: aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: Any) -> None:
        """Left out on purpose (see the class docstring)."""


@dataclass
class Api:
    server: aio.Server
    port: int
    health: health.HealthServicer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    close_servicers: Callable[[], None]

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, status)

    def stop(self, grace: float = 5.0) -> None:
        self.set_serving(False)
        if self.loop.is_closed():
            return
        stopping = asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)
        try:
            stopping.result(grace + 5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(grace + 5)
            self.close_servicers()


def create_server(
    address: str,
    app: RetailApp,
    queries: StockQueries,
    progress: ProgressQueries,
    flash: FlashSales,
    tills: TillDesk,
    workers: int = 32,
    event_loop: str = "uvloop",
) -> Api:
    """Builds and starts the server on a loop thread of its own; bind port 0 to let the OS
    choose (tests)."""
    loop = new_event_loop(event_loop)
    loop.set_default_executor(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc-async")
    )
    thread = threading.Thread(target=loop.run_forever, name="grpc-loop", daemon=True)
    thread.start()
    try:
        return asyncio.run_coroutine_threadsafe(
            _start(loop, thread, address, app, queries, progress, flash, tills, workers), loop
        ).result(60)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        raise


async def _start(
    loop: asyncio.AbstractEventLoop,
    thread: threading.Thread,
    address: str,
    app: RetailApp,
    queries: StockQueries,
    progress: ProgressQueries,
    flash: FlashSales,
    tills: TillDesk,
    workers: int,
) -> Api:
    server = aio.server(
        migration_thread_pool=futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="grpc"
        ),
        options=[("grpc.so_reuseport", 0)],
    )

    def service(module: Any, name: str) -> Any:
        return module.DESCRIPTOR.services_by_name[name]

    stock_servicer = StockServicer(queries, progress, app)
    # Generic handlers are looked up in the order they were added: the hot methods first.
    # Duck-typed: the generated functions call the two methods it has, nothing else.
    generic = cast(aio.Server, _GenericHandlersOnly(server))
    order_pb2_grpc.add_OrderServiceServicer_to_server(
        guarded(OrderServicer(app, flash), service(order_pb2, "OrderService")), generic
    )
    stock_pb2_grpc.add_StockServiceServicer_to_server(
        guarded(stock_servicer, service(stock_pb2, "StockService")), generic
    )
    pos_pb2_grpc.add_PosServiceServicer_to_server(
        guarded(PosServicer(app, tills), service(pos_pb2, "PosService")), generic
    )
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(
        guarded(CatalogServicer(app), service(catalog_pb2, "CatalogService")), generic
    )
    location_pb2_grpc.add_LocationServiceServicer_to_server(
        guarded(LocationServicer(app), service(location_pb2, "LocationService")), generic
    )
    inventory_pb2_grpc.add_InventoryServiceServicer_to_server(
        guarded(InventoryServicer(app), service(inventory_pb2, "InventoryService")), generic
    )
    sales_pb2_grpc.add_SalesServiceServicer_to_server(
        guarded(
            SalesServicer(SalesQueries(queries.engine), progress),
            service(sales_pb2, "SalesService"),
        ),
        generic,
    )
    finance_pb2_grpc.add_FinanceServiceServicer_to_server(
        guarded(
            FinanceServicer(app, FinanceQueries(queries.engine), progress),
            service(finance_pb2, "FinanceService"),
        ),
        generic,
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, generic)
    # What reflection.enable_server_reflection does for a grpc.aio server, through `generic`.
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(  # type: ignore[attr-defined]  # in its __all__
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)
        ),
        generic,
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:  # grpc.aio raises where the sync server answered 0
        raise OSError(f"cannot listen on {address}: is another server using it?") from error
    if port == 0:
        raise OSError(f"cannot listen on {address}: is another server using it?")
    await server.start()
    api = Api(server, port, health_servicer, loop, thread, stock_servicer.close)
    api.set_serving(True)
    return api

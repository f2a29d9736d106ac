"""The baselines' servers, each run as a process of its own by the orchestrator.

- `noop`: the transport ceiling. A sync `grpc.server` with a thread pool serving the real
  OrderService.FlashBuy and StockService.GetStock methods, answering at once: FlashBuy
  confirms the first `units` calls and answers sold out after; GetStock answers a canned
  response (a real one captured from the backend, so the bytes on the wire are the same).
- `naive`: the naive peer. FlashBuy backed by one SQL statement on a SQLite file in WAL mode
  (the kind of file the backend's default event store is):
  `UPDATE stock SET qty = qty - 1 WHERE sku = ? AND qty > 0`, committed per call.
- `noop_aio`: the same no-op methods as coroutines on a grpc.aio server (the backend's kind
  of server); the table's ceiling is the faster of the two.
- `handoff_aio`: `noop_aio` with FlashBuy and RecordSale answered through the backend's desk
  machinery (services.desks: a queue, a thread deciding batches, the answers handed back to
  the loop), deciding nothing and saving nothing: what answering after a commit made by a
  writer thread costs before any commit is made.
- `group`: the group-commit peer. `handoff_aio` whose desk thread decides FlashBuy against a
  counter and commits each batch's order ids in one SQLite transaction before answering.

Spec (JSON, the one argument): {"mode", "port", "workers", "units", "db", "stock_response_hex",
"naive_connections": "shared" | "per_thread"}. Prints "ready" once serving; stops on SIGINT
or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from concurrent import futures
from typing import Any

import grpc
from grpc import aio

from protos.retail.v1 import order_pb2, pos_pb2, stock_pb2
from services import flash
from services.desks import Desk, Ticket, answer_of
from services.rpc.loop import new_event_loop


class NoopOrders:
    def __init__(self, units: int) -> None:
        self.units = units
        self._sold = itertools.count(1)  # next() on a count is atomic under the GIL

    def FlashBuy(
        self, request: order_pb2.FlashBuyRequest, context: grpc.ServicerContext
    ) -> order_pb2.FlashBuyResponse:
        sold = next(self._sold)
        confirmed = sold <= self.units
        return order_pb2.FlashBuyResponse(
            order_id=request.order_id,
            outcome=order_pb2.FLASH_OUTCOME_CONFIRMED
            if confirmed
            else order_pb2.FLASH_OUTCOME_SOLD_OUT,
            quantity=request.quantity or 1,
            remaining=max(self.units - sold, 0),
            position=sold,
        )


class NoopStock:
    def __init__(self, canned: bytes) -> None:
        self.canned = stock_pb2.GetStockResponse.FromString(canned)

    def GetStock(
        self, request: stock_pb2.GetStockRequest, context: grpc.ServicerContext
    ) -> stock_pb2.GetStockResponse:
        return self.canned


class NoopPos:
    def __init__(self, canned: bytes) -> None:
        self.canned = pos_pb2.SaleReceipt.FromString(canned)

    def RecordSale(
        self, request: pos_pb2.RecordSaleRequest, context: grpc.ServicerContext
    ) -> pos_pb2.SaleReceipt:
        return self.canned


class NaiveOrders:
    """One UPDATE per purchase; SQLite decides, its write lock serialises."""

    def __init__(self, db: str, sku: str, units: int, shared: bool) -> None:
        self.db = db
        self.shared = shared
        self._lock = threading.Lock()
        self._local = threading.local()
        self._positions = itertools.count(1)
        setup = self._connect()
        setup.execute("CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty INTEGER)")
        setup.execute("INSERT OR REPLACE INTO stock (sku, qty) VALUES (?, ?)", (sku, units))
        self._shared = setup

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def _sell(self, sku: str) -> int | None:
        """Answers the units left after the sale, or None when there was nothing to sell."""
        if self.shared:
            with self._lock:
                row = self._shared.execute(
                    "UPDATE stock SET qty = qty - 1 WHERE sku = ? AND qty > 0 RETURNING qty",
                    (sku,),
                ).fetchone()
        else:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect()
            row = conn.execute(
                "UPDATE stock SET qty = qty - 1 WHERE sku = ? AND qty > 0 RETURNING qty", (sku,)
            ).fetchone()
        return None if row is None else int(row[0])

    def FlashBuy(
        self, request: order_pb2.FlashBuyRequest, context: grpc.ServicerContext
    ) -> order_pb2.FlashBuyResponse:
        left = self._sell(request.sku)
        return order_pb2.FlashBuyResponse(
            order_id=request.order_id,
            outcome=order_pb2.FLASH_OUTCOME_SOLD_OUT
            if left is None
            else order_pb2.FLASH_OUTCOME_CONFIRMED,
            quantity=request.quantity or 1,
            remaining=left or 0,
            position=next(self._positions),
        )


def _service(
    name: str, methods: dict[str, tuple[Any, Any, Any]]
) -> grpc.GenericRpcHandler[Any, Any]:
    """Handlers registered by full method name, as the generated code does (the generated
    base classes are abstract over every method of the service, which a baseline lacks)."""
    return grpc.method_handlers_generic_handler(
        name,
        {
            method: grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )
            for method, (behaviour, request, response) in methods.items()
        },
    )


ORDERS = "retail.v1.OrderService"
STOCK = "retail.v1.StockService"
POS = "retail.v1.PosService"
RECORD_SALE = (pos_pb2.RecordSaleRequest, pos_pb2.SaleReceipt)
FLASH = (order_pb2.FlashBuyRequest, order_pb2.FlashBuyResponse)
GET_STOCK = (stock_pb2.GetStockRequest, stock_pb2.GetStockResponse)


def _noop_handlers(spec: dict[str, Any], coroutines: bool = False) -> tuple[Any, ...]:
    orders = NoopOrders(int(spec["units"]))
    stock = NoopStock(bytes.fromhex(spec.get("stock_response_hex", "")))
    pos = NoopPos(bytes.fromhex(spec.get("receipt_hex", "")))
    behaviours: list[Any] = [orders.FlashBuy, stock.GetStock, pos.RecordSale]
    if coroutines:
        behaviours = [_as_coroutine(b) for b in behaviours]
    flash_buy, get_stock, record_sale = behaviours
    return (
        _service(ORDERS, {"FlashBuy": (flash_buy, *FLASH)}),
        _service(STOCK, {"GetStock": (get_stock, *GET_STOCK)}),
        _service(POS, {"RecordSale": (record_sale, *RECORD_SALE)}),
    )


def _as_coroutine(behaviour: Any) -> Any:
    async def answer(request: Any, context: Any) -> Any:
        return behaviour(request, context)

    return answer


class _Call(Ticket):
    __slots__ = ("context", "request")

    def __init__(self, request: Any, context: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(time.monotonic() + 30, loop)
        self.request, self.context = request, context


# The flash desk's shape (services.flash): batch size, queue bound, linger and gather.
_DESK_SHAPE = (flash.MAX_BATCH, flash.MAX_QUEUE, flash.LINGER, flash.GATHER)


class _NoopDesk(Desk[_Call]):
    """The backend's desk machinery (services.desks) deciding nothing: each call is answered
    by the no-op behaviour on the desk's thread, then handed back to the loop."""

    def __init__(self, behaviour: Any) -> None:
        super().__init__("no-op desk", *_DESK_SHAPE)
        self.behaviour = behaviour
        self.start()

    def _settle(self, batch: list[_Call]) -> None:
        for call in batch:
            call.answer = self.behaviour(call.request, call.context)


def _handed_off(behaviour: Any) -> Any:
    return _through(_NoopDesk(behaviour))


def _through(desk: Desk[_Call]) -> Any:
    """A coroutine method answering each call with what `desk` decides for it."""

    async def answer(request: Any, context: Any) -> Any:
        call = desk.submit(_Call(request, context, asyncio.get_running_loop()))
        return await answer_of(call, 30)

    return answer


def _handoff_handlers(spec: dict[str, Any]) -> tuple[Any, ...]:
    """`handoff_aio`: FlashBuy and RecordSale answered by the no-op behaviour after a round
    trip through a desk thread, as the backend answers them after its desk's commit."""
    orders = NoopOrders(int(spec["units"]))
    pos = NoopPos(bytes.fromhex(spec.get("receipt_hex", "")))
    return (
        _service(ORDERS, {"FlashBuy": (_handed_off(orders.FlashBuy), *FLASH)}),
        _service(POS, {"RecordSale": (_handed_off(pos.RecordSale), *RECORD_SALE)}),
    )


class _GroupDesk(Desk[_Call]):
    """The group-commit peer: the least a durable answer needs on the backend's kind of
    server. Each FlashBuy goes through the backend's desk machinery (services.desks) to one
    thread, which decides what has queued up against a counter and commits the batch's order
    ids in one SQLite transaction (WAL, the default synchronous setting, as the backend's
    event store) before the answers go back to the loop. No event sourcing, no domain, no
    Kafka: what remains is the transport and waiting for a shared durable commit."""

    def __init__(self, db: str, units: int) -> None:
        super().__init__("group-commit desk", *_DESK_SHAPE)
        self.left = units
        self.position = 0
        self._conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS sold (batch INTEGER, orders TEXT)")
        self.start()

    def _settle(self, batch: list[_Call]) -> None:
        sold = [call.request.order_id for call in batch[: self.left]]
        if sold:  # committed before any answer is set: a failed commit confirms nothing
            with self._conn:  # BEGIN ... COMMIT, or ROLLBACK and raise
                self._conn.execute("BEGIN")
                self._conn.execute(
                    "INSERT INTO sold VALUES (?, ?)", (self.position + 1, json.dumps(sold))
                )
            self.position += 1
            self.left -= len(sold)
        for index, call in enumerate(batch):
            request, confirmed = call.request, index < len(sold)
            call.answer = order_pb2.FlashBuyResponse(
                order_id=request.order_id,
                outcome=order_pb2.FLASH_OUTCOME_CONFIRMED
                if confirmed
                else order_pb2.FLASH_OUTCOME_SOLD_OUT,
                quantity=request.quantity or 1,
                remaining=self.left + len(sold) - index - 1 if confirmed else 0,
                position=self.position,
            )


def _group_handlers(spec: dict[str, Any]) -> tuple[Any, ...]:
    desk = _GroupDesk(spec["db"], int(spec["units"]))
    return (_service(ORDERS, {"FlashBuy": (_through(desk), *FLASH)}),)


def serve_aio(spec: dict[str, Any]) -> None:
    """`noop_aio`: the same no-op methods as coroutines on a grpc.aio server, the kind of
    server the backend is; `handoff_aio`: the same, answered through a desk thread; `group`:
    FlashBuy decided and committed by that desk thread."""

    async def main() -> None:
        server = aio.server(options=[("grpc.so_reuseport", 0)])
        if spec["mode"] == "handoff_aio":
            server.add_generic_rpc_handlers(_handoff_handlers(spec))
        elif spec["mode"] == "group":
            server.add_generic_rpc_handlers(_group_handlers(spec))
        else:
            server.add_generic_rpc_handlers(_noop_handlers(spec, coroutines=True))
        if server.add_insecure_port(f"127.0.0.1:{int(spec['port'])}") == 0:
            raise SystemExit(f"cannot listen on port {spec['port']}")
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 3600)  # bounded even if nobody stops us
        await server.stop(2)

    # On the backend's kind of event loop (uvloop unless RETAIL_EVENT_LOOP=asyncio), so the
    # ceiling is not lowered by a slower loop than the backend's.
    kind = os.environ.get("RETAIL_EVENT_LOOP", "uvloop")
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        runner.run(main())


def serve(spec: dict[str, Any]) -> None:
    if spec["mode"] in ("noop_aio", "handoff_aio", "group"):
        serve_aio(spec)
        return
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=int(spec["workers"]), thread_name_prefix="grpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    if spec["mode"] == "noop":
        server.add_generic_rpc_handlers(_noop_handlers(spec))
    elif spec["mode"] == "naive":
        naive_orders = NaiveOrders(
            spec["db"], spec["sku"], int(spec["units"]),
            shared=spec.get("naive_connections", "shared") == "shared",
        )  # fmt: skip
        naive = _service(ORDERS, {"FlashBuy": (naive_orders.FlashBuy, *FLASH)})
        server.add_generic_rpc_handlers((naive,))
    else:
        raise SystemExit(f"unknown mode {spec['mode']!r}")
    if server.add_insecure_port(f"127.0.0.1:{int(spec['port'])}") == 0:
        raise SystemExit(f"cannot listen on port {spec['port']}")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stop.wait(3600)  # bounded even if nobody stops us
    server.stop(2).wait(5)


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))

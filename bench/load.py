"""The load generator: a process of its own, driving one server over loopback gRPC (grpc.aio,
one event loop, many calls in flight), every loop bounded in calls and in seconds.

Spec (JSON on stdin) picks the mode; the result is one JSON line on stdout.

- flash: `buyers` FlashBuy calls, quantity 1, unique order ids, `concurrency` in flight.
- stock_closed: GetStock of random SKUs as fast as `concurrency` callers go.
- stock_open: GetStock paced at `rate` calls/s (open loop: latency counts from the moment a
  call was due, so a slow server cannot hide its queue).
- pos_closed: RecordSale with 1-5 lines from many terminals, as fast as it goes.
- pos_open: RecordSale paced at `rate`, while GetPipelineStatus is polled: a sale's
  projection lag is the time from its receipt until the views are complete up to its position.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio

from bench.common import latency_summary, read_spec, write_result
from protos.retail.v1 import (
    order_pb2,
    order_pb2_grpc,
    pos_pb2,
    pos_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)

Call = Callable[[int], Awaitable[str]]
RETRYABLE = (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE)
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]


@dataclass
class Run:
    started: float = 0.0
    started_unix: float = 0.0  # `started` as unix time, for lining up with other processes
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    finished_at: list[tuple[float, str]] = field(default_factory=list)  # (since start, outcome)
    dropped: int = 0
    cpu_started: float = field(default_factory=time.process_time)
    cores: float = 0.0  # this load process's CPU use during the run

    def summary(self) -> dict[str, Any]:
        done = sum(self.outcomes.values())
        return {
            "calls": done,
            "seconds": self.elapsed,
            "rate": done / self.elapsed if self.elapsed else 0.0,
            "outcomes": dict(self.outcomes),
            "dropped": self.dropped,
            "load_cores": self.cores,
            "started_unix": self.started_unix,
            **latency_summary(self.latencies_ms),
        }


async def _timed(run: Run, call: Call, index: int, due: float) -> None:
    try:
        outcome = await call(index)
    except aio.AioRpcError as error:
        outcome = error.code().name
    now = time.perf_counter()
    run.latencies_ms.append((now - due) * 1000.0)
    run.outcomes[outcome] += 1
    run.finished_at.append((now - run.started, outcome))


async def closed_loop(call: Call, total: int, concurrency: int, seconds: float) -> Run:
    """`concurrency` callers, each starting its next call when the last one answered, until
    `total` calls were made or `seconds` passed."""
    run = Run()
    next_index = 0
    run.started, run.started_unix = time.perf_counter(), time.time()
    stop_at = run.started + seconds

    async def caller() -> None:
        nonlocal next_index
        while next_index < total and time.perf_counter() < stop_at:
            index = next_index
            next_index += 1
            await _timed(run, call, index, time.perf_counter())

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    run.elapsed = time.perf_counter() - run.started
    run.cores = (time.process_time() - run.cpu_started) / run.elapsed
    return run


async def open_loop(call: Call, rate: float, seconds: float, max_in_flight: int) -> Run:
    """Calls due at `rate` per second for `seconds`, whatever the answers; a call due while
    `max_in_flight` are still out is dropped (and counted)."""
    run = Run()
    total = max(int(rate * seconds), 1)
    pending: set[asyncio.Task[None]] = set()
    run.started = time.perf_counter() + 0.05
    index = 0
    while index < total:
        now = time.perf_counter()
        while index < total and run.started + index / rate <= now:
            if len(pending) >= max_in_flight:
                run.dropped += 1
            else:
                task = asyncio.create_task(_timed(run, call, index, run.started + index / rate))
                pending.add(task)
                task.add_done_callback(pending.discard)
            index += 1
        if index < total:
            await asyncio.sleep(max(run.started + index / rate - time.perf_counter(), 0.0))
    if pending:
        await asyncio.wait(pending, timeout=60)
    run.elapsed = time.perf_counter() - run.started
    run.cores = (time.process_time() - run.cpu_started) / run.elapsed
    return run


# Modes


async def flash(spec: dict[str, Any]) -> dict[str, Any]:
    units, prefix = int(spec["units"]), spec["prefix"]
    async with aio.insecure_channel(spec["target"], options=CHANNEL_OPTIONS) as channel:
        stub: Any = order_pb2_grpc.OrderServiceStub(channel)  # typed for the sync API
        names = {
            order_pb2.FLASH_OUTCOME_CONFIRMED: "confirmed",
            order_pb2.FLASH_OUTCOME_SOLD_OUT: "sold_out",
            order_pb2.FLASH_OUTCOME_LIMIT_REACHED: "limit_reached",
        }
        timeout = float(spec.get("call_timeout", 30.0))

        async def buy(index: int) -> str:
            answer = await stub.FlashBuy(
                order_pb2.FlashBuyRequest(
                    order_id=f"{prefix}-{index:07d}", sku=spec["sku"],
                    location=spec["location"], quantity=1,
                ),
                timeout=timeout,
            )  # fmt: skip
            return names.get(answer.outcome, "unspecified")

        await channel.channel_ready()  # connected before the clock starts
        run = await closed_loop(
            buy, int(spec["buyers"]), int(spec["concurrency"]), float(spec["seconds"])
        )
    confirmed = sorted(at for at, outcome in run.finished_at if outcome == "confirmed")
    sold_out_at = confirmed[-1] if len(confirmed) >= units else None
    # When each tenth of the units had been confirmed: a rate that falls as the sale goes on
    # shows here.
    tenths = [confirmed[min(len(confirmed), units * k // 10) - 1] for k in range(1, 11)]
    return {
        **run.summary(),
        **_kept(run, spec),
        "units": units,
        "buyers": int(spec["buyers"]),
        "confirmed": len(confirmed),
        "sold_out_seconds": sold_out_at,
        "confirmed_per_second": units / sold_out_at if sold_out_at else 0.0,
        # Calls answered until the last unit was sold (sold-out answers among them).
        "calls_until_sold_out": sum(1 for at, _ in run.finished_at if at <= sold_out_at)
        if sold_out_at
        else 0,
        "tenths_at": tenths if confirmed else [],
    }


def _stock_call(stub: Any, skus: list[str], seed: int) -> tuple[Call, list[bytes]]:
    rng = random.Random(seed)
    sample: list[bytes] = []

    async def get(index: int) -> str:
        del index
        answer = await stub.GetStock(stock_pb2.GetStockRequest(sku=rng.choice(skus)), timeout=10)
        if not sample:
            sample.append(answer.SerializeToString())
        return "ok"

    return get, sample


async def stock_closed(spec: dict[str, Any]) -> dict[str, Any]:
    async with aio.insecure_channel(spec["target"], options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        get, sample = _stock_call(stock_pb2_grpc.StockServiceStub(channel), spec["skus"], 1)
        run = await closed_loop(
            get, int(spec["max_calls"]), int(spec["concurrency"]), float(spec["seconds"])
        )
    return {**run.summary(), **_kept(run, spec), "sample_hex": sample[0].hex() if sample else ""}


async def stock_open(spec: dict[str, Any]) -> dict[str, Any]:
    async with aio.insecure_channel(spec["target"], options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        get, _ = _stock_call(stock_pb2_grpc.StockServiceStub(channel), spec["skus"], 2)
        run = await open_loop(
            get, float(spec["rate"]), float(spec["seconds"]), int(spec["max_in_flight"])
        )
    return {**run.summary(), **_kept(run, spec), "offered_rate": float(spec["rate"])}


def _kept(run: Run, spec: dict[str, Any]) -> dict[str, Any]:
    """Every call's latency (ms, to 10 us) when the spec asks: a run made in parts
    (bench.main's interleaved GetStock) has its percentiles taken over all of them."""
    if not spec.get("keep_latencies"):
        return {}
    return {"latencies_ms": [round(value, 2) for value in run.latencies_ms]}


@dataclass
class _Pos:
    stub: Any  # pos_pb2_grpc.PosServiceStub, typed for the sync API
    terminals: list[list[str]]  # [terminal, location]
    skus: list[str]
    prefix: str
    rng: random.Random
    retries: int = 0
    receipts: list[tuple[float, int]] = field(default_factory=list)  # (answered at, position)
    sample: bytes = b""  # one receipt as sent, for the no-op server's answer

    async def sell(self, index: int) -> str:
        terminal, location = self.terminals[index % len(self.terminals)]
        chosen = self.rng.sample(self.skus, self.rng.randint(1, min(5, len(self.skus))))
        request = pos_pb2.RecordSaleRequest(
            terminal_id=terminal, client_sale_id=f"{self.prefix}{index}", location=location,
            staff_id="bench",
            lines=[pos_pb2.SaleLineInput(sku=s, quantity=self.rng.randint(1, 3)) for s in chosen],
        )  # fmt: skip
        for attempt in range(6):
            try:
                receipt = await self.stub.RecordSale(request, timeout=30)
            except aio.AioRpcError as error:
                if error.code() in RETRYABLE and attempt < 5:
                    self.retries += 1  # the same sale id: a retry is idempotent
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                raise
            self.receipts.append((time.perf_counter(), receipt.position))
            if not self.sample:
                self.sample = receipt.SerializeToString()
            return "ok"
        return "gave_up"  # not reached: the last attempt raises


def _pos(channel: aio.Channel, spec: dict[str, Any], seed: int) -> _Pos:
    return _Pos(
        pos_pb2_grpc.PosServiceStub(channel), spec["terminals"], spec["skus"], spec["prefix"],
        random.Random(seed),
    )  # fmt: skip


async def pos_closed(spec: dict[str, Any]) -> dict[str, Any]:
    async with aio.insecure_channel(spec["target"], options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        pos = _pos(channel, spec, 3)
        run = await closed_loop(
            pos.sell, int(spec["max_sales"]), int(spec["concurrency"]), float(spec["seconds"])
        )
        visible = None
        if spec.get("until_visible") and pos.receipts:
            # End to end: until the views (stock and finance, one projector) have applied
            # the last sale posted.
            last = max(position for _, position in pos.receipts)
            stock: Any = stock_pb2_grpc.StockServiceStub(channel)
            deadline = time.perf_counter() + float(spec.get("settle_seconds", 60))
            while time.perf_counter() < deadline:
                status = await stock.GetPipelineStatus(
                    stock_pb2.GetPipelineStatusRequest(), timeout=10
                )
                if status.view_position >= last:
                    visible = time.perf_counter() - run.started
                    break
                await asyncio.sleep(0.01)
    done = sum(run.outcomes.values())
    positions = [position for _, position in pos.receipts]
    return {
        **run.summary(),
        "first_position": min(positions, default=0),
        "last_position": max(positions, default=0),
        "retries": pos.retries,
        "visible_seconds": visible,
        "end_to_end_rate": done / visible if visible else 0.0,
        "sample_hex": pos.sample.hex() if pos.sample else "",
    }


async def pos_open(spec: dict[str, Any]) -> dict[str, Any]:
    async with aio.insecure_channel(spec["target"], options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        pos = _pos(channel, spec, 4)
        stock: Any = stock_pb2_grpc.StockServiceStub(channel)
        seen: list[tuple[float, int]] = []  # (when, view position), position never falling
        stop = asyncio.Event()
        interval = float(spec.get("poll_interval", 0.01))

        async def poll() -> None:
            deadline = time.monotonic() + float(spec["seconds"]) + 120
            while not stop.is_set() and time.monotonic() < deadline:
                status = await stock.GetPipelineStatus(stock_pb2.GetPipelineStatusRequest())
                top = max(status.view_position, seen[-1][1] if seen else 0)
                seen.append((time.perf_counter(), top))
                await asyncio.sleep(interval)

        poller = asyncio.create_task(poll())
        run = await open_loop(
            pos.sell, float(spec["rate"]), float(spec["seconds"]), int(spec["max_in_flight"])
        )
        wanted = max((p for _, p in pos.receipts), default=0)
        settle = time.monotonic() + float(spec.get("settle_seconds", 60))
        while (not seen or seen[-1][1] < wanted) and time.monotonic() < settle:
            await asyncio.sleep(0.05)
        stop.set()
        await poller
    positions = [p for _, p in seen]
    lags: list[float] = []
    unseen = 0
    for answered, position in pos.receipts:
        at = bisect.bisect_left(positions, position)
        if at == len(seen):
            unseen += 1
            continue
        lags.append(max(seen[at][0] - answered, 0.0) * 1000.0)
    lag = latency_summary(lags)
    return {
        **run.summary(),
        "offered_rate": float(spec["rate"]),
        "retries": pos.retries,
        "lag_p50_ms": lag["p50_ms"],
        "lag_p99_ms": lag["p99_ms"],
        "lag_max_ms": lag["max_ms"],
        "lag_unseen": unseen,
        "polls": len(seen),
    }


MODES: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
    "flash": flash,
    "stock_closed": stock_closed,
    "stock_open": stock_open,
    "pos_closed": pos_closed,
    "pos_open": pos_open,
}


def main() -> None:
    spec = read_spec()
    write_result(asyncio.run(MODES[spec["mode"]](spec)))


if __name__ == "__main__":
    main()

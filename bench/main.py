"""The orchestrator: starts the broker, the backend and the baselines' servers, runs each
scenario's load from a process of its own, prints the table and writes docs/benchmarks.md."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

from bench import profile
from bench.common import REPO_ROOT, Children, merged_flash, merged_runs, run_worker
from bench.report import Row, console_table, load_average, machine, markdown_table, today
from bench.rows import rows_for
from bench.sizes import Sizes, from_env
from bench.stack import (
    BackendProcess,
    ForeignLoad,
    RssSampler,
    TimePoint,
    cpu_use,
    phase_cores,
    start_backend,
    start_broker,
    start_server,
)
from bench.warmup import warm_broker
from protos.retail.v1 import (
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    location_pb2,
    location_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from services.localkafka import LocalKafka
from services.seed import DEMO_LOCATIONS, DEMO_SKUS

FLASH_SKU, FLASH_LOCATION = "LTD-HOURGLASS-01", "ONLINE-FLAGSHIP"
SERVER_KINDS = {
    "noop": "thread-per-call",
    "noop_aio": "grpc.aio",
    "handoff_aio": "grpc.aio, answered through a desk thread",
}
# The flash sale's baselines, run beside the backend's sale in this order before it and in the
# reverse order after it; the phase each part's failure is recorded under.
FLASH_BESIDE = ("noop_aio", "handoff_aio", "noop", "naive")
BASELINE_PHASES = {mode: "transport ceiling" for mode in SERVER_KINDS} | {"naive": "naive peer"}
POS_SKUS = ("MC26-TINA-PLUSH-30", "MC26-MILO-PLUSH-30", "MC26-TINA-KEYCHAIN",
            "MC26-MILO-FIGURINE", "JW-SNOWFLAKE-PENDANT")  # fmt: skip
DOCS = REPO_ROOT / "docs" / "benchmarks.md"


class TerminatedError(Exception):
    """SIGTERM, handled like Ctrl-C."""


def _on_term(signum: int, _frame: FrameType | None) -> None:
    raise TerminatedError(signal.Signals(signum).name)


class Bench:
    def __init__(self, sizes: Sizes, work: Path) -> None:
        self.sizes = sizes
        self.work = work
        self.logs = work / "logs"
        self.children = Children()
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.broker: LocalKafka | None = None
        self.sampler: RssSampler | None = None
        self.profiles: dict[str, str] = {}
        self.foreign: ForeignLoad | None = None

    def phase(self, name: str, body: Callable[[], None]) -> None:
        """Runs one phase; a failure is recorded (and shown in the table), the rest goes on."""
        started = time.monotonic()
        print(f"[bench] {name} ...", flush=True)
        try:
            body()
        except (KeyboardInterrupt, TerminatedError):
            raise
        except Exception as error:
            self.errors[name] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
            print(f"[bench] {name} FAILED: {self.errors[name]}", flush=True)
            traceback.print_exc()
        print(f"[bench] {name} done in {time.monotonic() - started:.0f} s", flush=True)

    def load(self, spec: dict[str, Any], name: str, timeout: float) -> dict[str, Any]:
        return run_worker(
            self.children, "bench.load", spec, self.logs / f"load-{name}.log", timeout
        )

    def cpu_window(self, name: str) -> AbstractContextManager[None]:
        return self.sampler.window(name) if self.sampler is not None else nullcontext()

    def timeline(self) -> AbstractContextManager[list[TimePoint]]:
        return self.sampler.timeline() if self.sampler is not None else nullcontext([])

    def warmup_phase(self) -> None:
        assert self.broker is not None and self.broker.process is not None
        seconds = self.sizes.warmup_seconds
        with cpu_use(self.broker.process.pid) as cpu:
            counts = warm_broker(self.broker.bootstrap, seconds)
        self.results["warmup"] = {**counts, "seconds": seconds, "broker_cores": cpu.get("cores")}

    # The backend: flash sale, stock queries, POS ingest, memory

    def backend_phase(self) -> None:
        assert self.broker is not None
        s = self.sizes
        backend = start_backend(
            self.children, self.work / "data", self.broker.bootstrap,
            self.logs / "backend.log", s.grpc_workers,
        )  # fmt: skip
        broker = self.broker.process.pid if self.broker.process is not None else None
        self.sampler = RssSampler(backend.process.pid, broker_pid=broker).start()
        channel = grpc.insecure_channel(backend.target)
        try:
            self.phase("flash sale on the backend", lambda: self.flash_backend(backend, channel))
            self.sampler.mark("flash")
            self.phase("stock queries on the backend", lambda: self.stock_backend(backend, channel))
            self.sampler.mark("stock")
            self.phase("POS ingest on the backend", lambda: self.pos_backend(backend, channel))
            self.sampler.mark("pos")
        finally:
            channel.close()
            code = self.children.stop(backend.process, grace=60)
            self.sampler.stop()
            self.results["rss"] = {
                "peak": self.sampler.peak,
                "children": max(self.sampler.children.values(), default=0),
                "marks": dict(self.sampler.marks),
                "cpu": dict(self.sampler.cpu),
                "cpu_around": dict(self.sampler.cpu_around),
            }
            self.results["backend_exit"] = code

    def flash_backend(self, backend: BackendProcess, channel: grpc.Channel) -> None:
        s = self.sizes
        inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
        before = inventory.GetStockLevels(
            inventory_pb2.GetStockLevelsRequest(sku=FLASH_SKU, location=FLASH_LOCATION), timeout=10
        ).levels.on_hand
        inventory.ReceiveStock(
            inventory_pb2.ReceiveStockRequest(
                sku=FLASH_SKU, location=FLASH_LOCATION, quantity=s.flash_units,
                reference="bench-flash",
            ),
            timeout=10,
        )  # fmt: skip
        # The baselines sell their units in two parts, one just before the sale and one just
        # after it (in the reverse order), beside the idle backend: their figures and the
        # backend's come from the same minutes.
        parts: dict[str, list[dict[str, Any]]] = {mode: [] for mode in FLASH_BESIDE}

        def sell(index: int, modes: Sequence[str]) -> None:
            for mode in modes:
                if len(parts[mode]) == index:  # a failed first part leaves its kind out

                    def part(mode: str = mode) -> None:
                        parts[mode].append(self.baseline_part(mode, index))

                    self.phase(BASELINE_PHASES[mode], part)

        sell(0, FLASH_BESIDE)
        spec = self.flash_spec(backend.target, "backend")
        with (
            profile.attached(self.children, backend.process.pid, "flash", self.work) as prof,
            self.cpu_window("flash"),
            self.timeline() as points,
        ):
            result = self.load(spec, "flash-backend", s.flash_seconds + 120)
        if result.get("sold_out_seconds") and points:
            # Until the last unit and after it (the sold-out tail): which is bound by what.
            cut = float(result["started_unix"]) + float(result["sold_out_seconds"])
            result["phases"] = phase_cores(points, cut)
        self.profiles.update(prof.summaries)
        sell(1, FLASH_BESIDE[::-1])
        for mode, runs in parts.items():
            if len(runs) == 2:
                key = "flash_naive" if mode == "naive" else f"flash_ceiling_{mode}"
                self.results[key] = {**merged_flash(runs), "server": SERVER_KINDS.get(mode, "")}
        after = inventory.GetStockLevels(
            inventory_pb2.GetStockLevelsRequest(sku=FLASH_SKU, location=FLASH_LOCATION), timeout=10
        ).levels
        result.update(on_hand_before=before, on_hand_after=after.on_hand,
                      available_after=after.available)  # fmt: skip
        self.results["flash"] = result

    def flash_spec(self, target: str, name: str, baseline_units: int = 0) -> dict[str, Any]:
        """The flash sale's load: N units to 2N buyers, or a baseline's units to that plus a
        tenth buyers (a baseline's figure is a rate: more units, or the sold-out tail after
        them, only cost run time)."""
        s = self.sizes
        units = baseline_units or s.flash_units
        buyers = units + units // 10 if baseline_units else s.flash_buyers
        return {
            "mode": "flash", "target": target, "sku": FLASH_SKU, "location": FLASH_LOCATION,
            "buyers": buyers, "units": units, "prefix": f"bench-{name}",
            "concurrency": s.concurrency, "seconds": s.flash_seconds,
        }  # fmt: skip

    def stock_backend(self, backend: BackendProcess, channel: grpc.Channel) -> None:
        s = self.sizes
        inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
        stock = stock_pb2_grpc.StockServiceStub(channel)
        skus = [code for code, *_ in DEMO_SKUS]
        position = 0
        for sku in skus:  # every demo SKU at every demo location: 6 rows per answer
            for location, *_ in DEMO_LOCATIONS:
                change = inventory.ReceiveStock(
                    inventory_pb2.ReceiveStockRequest(
                        sku=sku, location=location, quantity=500, reference="bench-stock"
                    ),
                    timeout=10,
                )
                position = max(position, change.position)
        started = time.monotonic()
        answer = stock.GetStock(
            stock_pb2.GetStockRequest(sku=skus[0], min_position=position), timeout=120
        )
        self.results["views_caught_up_seconds"] = time.monotonic() - started
        # The no-op servers answer that same answer, beside the idle backend: runs against
        # them take turns with the backend's (backend, grpc.aio, thread per call, thread per
        # call, grpc.aio, backend), so drift of this machine's speed over the minutes of the
        # run cancels out of the ratio instead of deciding it.
        noop_spec = {
            "workers": s.grpc_workers, "units": s.flash_units, "receipt_hex": "",
            "stock_response_hex": answer.SerializeToString().hex(),
        }  # fmt: skip
        servers = {
            mode: start_server(
                self.children, {**noop_spec, "mode": mode}, self.logs / f"{mode}-beside.log"
            )
            for mode in ("noop_aio", "noop")
        }
        try:
            targets = {"backend": (backend.target, backend.process.pid)} | {
                mode: (target, server.pid) for mode, (server, target) in servers.items()
            }
            closed_spec = {
                "mode": "stock_closed", "skus": skus, "max_calls": max(s.stock_calls // 2, 1),
                "seconds": s.stock_seconds / 2, "concurrency": s.concurrency,
            }  # fmt: skip
            order = ["backend", "noop_aio", "noop", "noop", "noop_aio", "backend"]
            with profile.attached(self.children, backend.process.pid, "stock", self.work) as prof:
                closed = self.stock_turns(targets, order, closed_spec, "stock", s.stock_seconds)
            self.profiles.update(prof.summaries)
            self.results["stock"] = closed["backend"]
            for mode in ("noop_aio", "noop"):
                self.results[f"stock_ceiling_{mode}"] = {
                    **closed[mode],
                    "server": SERVER_KINDS[mode],
                }
            rate = max(closed["backend"]["rate"] / 2, 1.0)
            open_spec = {
                "mode": "stock_open", "skus": skus, "rate": rate,
                "seconds": s.half_load_seconds / 2, "max_in_flight": 1000,
            }  # fmt: skip
            order = ["backend", "noop_aio", "noop_aio", "backend"]
            half = self.stock_turns(targets, order, open_spec, "stock_half", s.half_load_seconds)
            self.results["stock_half"] = half["backend"]
            self.results["stock_half_ceiling"] = half["noop_aio"]
        finally:
            for server, _ in servers.values():
                self.children.stop(server)

    def stock_turns(
        self, targets: dict[str, tuple[str, int]], order: list[str], spec: dict[str, Any],
        name: str, seconds: float,
    ) -> dict[str, dict[str, Any]]:  # fmt: skip
        """One load run per entry of `order` against that target, each kept with its server's
        CPU use; answers each target's parts as one run. The backend's parts are the CPU
        window `name`, the others' `name`_beside (what the idle backend used meanwhile)."""
        parts: dict[str, list[dict[str, Any]]] = {who: [] for who in order}
        for who in order:
            target, pid = targets[who]
            window = name if who == "backend" else f"{name}_beside"
            with cpu_use(pid) as cpu, self.cpu_window(window):
                result = self.load(
                    {**spec, "target": target, "keep_latencies": True},
                    f"{name}-{who}-{len(parts[who])}", seconds + 90,
                )  # fmt: skip
            parts[who].append({**result, "server_cores": _cores_in(result, cpu)})
        return {who: merged_runs(runs) for who, runs in parts.items()}

    def pos_backend(self, backend: BackendProcess, channel: grpc.Channel) -> None:
        s = self.sizes
        locations = location_pb2_grpc.LocationServiceStub(channel)
        inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
        stores = [f"STORE-BENCH-{i:04d}" for i in range(s.pos_stores)]
        for index, code in enumerate(stores):
            locations.RegisterLocation(
                location_pb2.RegisterLocationRequest(
                    location=location_pb2.Location(
                        location=code, kind=common_pb2.LOCATION_KIND_PARTNER_STORE,
                        name=f"Bench store {index}", city="Beijing", district=f"D{index % 10}",
                    )
                ),
                timeout=10,
            )  # fmt: skip
            for sku in POS_SKUS:
                inventory.ReceiveStock(
                    inventory_pb2.ReceiveStockRequest(
                        sku=sku, location=code, quantity=100_000, reference="bench-pos"
                    ),
                    timeout=10,
                )
        closed_spec = {**self.pos_spec(backend.target), "until_visible": True}
        with (
            profile.attached(self.children, backend.process.pid, "pos", self.work) as prof,
            self.cpu_window("pos"),
        ):
            closed = self.load(closed_spec, "pos-backend", s.pos_seconds + 90)
        self.profiles.update(prof.summaries)
        self.results["pos"] = closed
        rate = max(closed["rate"] / 2, 1.0)
        open_spec = {
            **closed_spec, "mode": "pos_open", "rate": rate, "seconds": s.half_load_seconds,
            "max_in_flight": 1000, "prefix": "H", "settle_seconds": 60,
        }  # fmt: skip
        self.results["pos_half"] = self.load(
            open_spec, "pos-half-backend", s.half_load_seconds + 150
        )

    def pos_spec(self, target: str) -> dict[str, Any]:
        s = self.sizes
        stores = [f"STORE-BENCH-{i:04d}" for i in range(s.pos_stores)]
        terminals = [[f"T-{i:04d}", stores[i % len(stores)]] for i in range(s.pos_terminals)]
        return {
            "mode": "pos_closed", "target": target, "terminals": terminals,
            "skus": list(POS_SKUS), "max_sales": s.pos_sales, "seconds": s.pos_seconds,
            "concurrency": s.concurrency, "prefix": "C",
        }  # fmt: skip

    # The same flash sale with the roles in two processes (the compose shape)

    def split_phase(self) -> None:
        """The flash sale again, with every role in one process (`--one-process`), at a fifth
        of N: what the relay and projector threads cost the API next to it."""
        assert self.broker is not None
        s = self.sizes
        units = max(s.flash_units // 5, 1)
        backend = start_backend(
            self.children, self.work / "one-process-data", self.broker.bootstrap,
            self.logs / "one-process.log", s.grpc_workers, namespace="one.",
            extra_env={"RETAIL_PIPELINE_PROCESS": "0"},
        )  # fmt: skip
        channel = grpc.insecure_channel(backend.target)
        try:
            inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
            where = inventory_pb2.GetStockLevelsRequest(sku=FLASH_SKU, location=FLASH_LOCATION)
            before = inventory.GetStockLevels(where, timeout=10).levels.on_hand
            inventory.ReceiveStock(
                inventory_pb2.ReceiveStockRequest(
                    sku=FLASH_SKU, location=FLASH_LOCATION, quantity=units,
                    reference="bench-flash",
                ),
                timeout=10,
            )  # fmt: skip
            spec = {**self.flash_spec(backend.target, "one"), "units": units, "buyers": 2 * units}
            with cpu_use(backend.process.pid) as cpu:
                result = self.load(spec, "flash-one-process", s.flash_seconds + 120)
            after = inventory.GetStockLevels(where, timeout=10).levels.on_hand
            result.update(
                on_hand_before=before, on_hand_after=after, server_cores=cpu.get("cores", 0.0)
            )
            self.results["flash_split"] = result
        finally:
            channel.close()
            self.children.stop(backend.process, grace=60)

    # The baselines

    def ceiling_phase(self) -> None:
        """The no-op servers, sync (thread per call), grpc.aio (the backend's kind) and grpc.aio
        answering through a desk thread (FlashBuy and RecordSale): each scenario's ceiling is
        the fastest, so no ratio is flattered. Their flash sales and GetStock loops ran beside
        the backend; RecordSale's run here."""
        modes = ("noop", "noop_aio", "handoff_aio")
        for mode in modes:
            self._ceiling(mode)
        for scenario in ("flash", "stock", "pos"):
            runs = [self.results.get(f"{scenario}_ceiling_{m}") for m in modes]
            measured = [r for r in runs if r]
            if measured:
                best = max(measured, key=lambda r: float(r["rate"]))
                self.results[f"{scenario}_ceiling"] = best

    def _ceiling(self, mode: str) -> None:
        s = self.sizes
        receipt = self.results.get("pos", {}).get("sample_hex", "")
        if not receipt:  # the flash sale's and GetStock's runs are made beside the backend
            return
        server, target = start_server(
            self.children,
            {"mode": mode, "workers": s.grpc_workers, "units": 0, "receipt_hex": receipt},
            self.logs / f"{mode}-server.log",
        )
        kind = SERVER_KINDS[mode]
        try:
            # A closed-loop rate: half the backend's run is plenty for a no-op server.
            spec = {**self.pos_spec(target), "prefix": mode, "seconds": s.pos_seconds / 2}
            with cpu_use(server.pid) as cpu:
                result = self.load(spec, f"pos-{mode}", s.pos_seconds + 120)
            result.update(server_cores=cpu.get("cores", 0.0), server=kind)
            self.results[f"pos_ceiling_{mode}"] = result
        finally:
            self.children.stop(server)

    def baseline_part(self, mode: str, index: int) -> dict[str, Any]:
        """Part `index` (0 or 1) of a baseline's flash sale beside the idle backend: a quarter
        of N a part, on a fresh server each time (the naive peer on a SQLite file of its
        own). The idle backend's CPU meanwhile is the window flash_beside."""
        s = self.sizes
        units = max(s.baseline_units // 2, 1)
        server_spec: dict[str, Any] = {}
        if mode == "naive":
            db = self.work / f"naive-{index}" / "stock.sqlite"
            db.parent.mkdir(parents=True, exist_ok=True)
            server_spec = {"db": str(db), "sku": FLASH_SKU, "naive_connections": "shared"}
        server, target = start_server(
            self.children,
            {**server_spec, "mode": mode, "workers": s.grpc_workers, "units": units},
            self.logs / f"{mode}-flash-server-{index}.log",
        )
        spec = {**self.flash_spec(target, f"{mode}-{index}", units), "keep_latencies": True}
        try:
            with cpu_use(server.pid) as cpu, self.cpu_window("flash_beside"):
                result = self.load(spec, f"flash-{mode}-{index}", s.flash_seconds + 120)
        finally:
            self.children.stop(server)
        return {**result, "server_cores": _cores_in(result, cpu)}

    def group_phase(self) -> None:
        s = self.sizes
        db = self.work / "group" / "sold.sqlite"
        db.parent.mkdir(parents=True, exist_ok=True)
        server, target = start_server(
            self.children,
            {"mode": "group", "workers": s.grpc_workers, "units": s.baseline_units,
             "db": str(db)},
            self.logs / "group-server.log",
        )  # fmt: skip
        try:
            with cpu_use(server.pid) as cpu:
                self.results["flash_group"] = self.load(
                    self.flash_spec(target, "group", s.baseline_units),
                    "flash-group",
                    s.flash_seconds + 120,
                )
            self.results["flash_group"]["server_cores"] = cpu.get("cores", 0.0)
        finally:
            self.children.stop(server)

    # The pipeline's stages on their own

    def pipeline_phase(self) -> None:
        assert self.broker is not None
        source = self.work / "data" / "events.sqlite"
        if not source.exists():
            raise RuntimeError("no event store to replay (the backend phase did not run)")
        copy = self.work / "pipeline" / "store" / "events.sqlite"
        copy.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            if Path(str(source) + suffix).exists():
                shutil.copyfile(str(source) + suffix, str(copy) + suffix)
        spec = {
            "events_db": str(copy), "bootstrap": self.broker.bootstrap,
            "work_dir": str(copy.parent.parent), "partitions": 6,
            "seconds": self.sizes.pipeline_seconds, "profile": profile.enabled(),
        }  # fmt: skip
        self.results["pipeline"] = run_worker(
            self.children, "bench.pipeline", spec, self.logs / "pipeline.log",
            self.sizes.pipeline_seconds + 120,
        )  # fmt: skip
        for stage, text in self.results["pipeline"].get("profiles", {}).items():
            self.profiles[f"{stage} (cProfile, main thread of the pipeline worker)"] = text

    def saves_phase(self) -> None:
        """Raw eventsourcing saves of the events the POS scenario wrote (bench.saves)."""
        pos = self.results.get("pos") or {}
        first, last = int(pos.get("first_position", 0)), int(pos.get("last_position", 0))
        sales = sum(pos.get("outcomes", {}).values())
        source = self.work / "data" / "events.sqlite"
        if sales < 2 or last <= first or not source.exists():
            raise RuntimeError("no POS events to save again (the POS scenario did not run)")
        spec = {
            "events_db": str(source), "work_dir": str(self.work / "saves"),
            "first": first + 1, "last": last, "sales": sales - 1, "seconds": 60,
        }  # fmt: skip
        self.results["raw_saves"] = run_worker(
            self.children, "bench.saves", spec, self.logs / "saves.log", 180
        )

    def run(self) -> None:
        self.foreign = ForeignLoad().start()
        self.broker = start_broker(self.work / "kafka")
        self.phase("broker warm-up", self.warmup_phase)
        self.phase("backend", self.backend_phase)
        if self.sizes.split:
            self.phase("flash sale, every role in one process", self.split_phase)
        self.phase("transport ceiling", self.ceiling_phase)
        self.phase("group-commit peer (a desk thread, plain SQLite)", self.group_phase)
        self.phase("pipeline stages", self.pipeline_phase)
        self.phase("raw eventsourcing saves", self.saves_phase)

    def stop(self) -> None:
        if self.foreign is not None:
            self.results["foreign"] = self.foreign.stop()
            self.foreign = None
        if self.sampler is not None:
            self.sampler.stop()
        self.children.stop_all()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None


def _cores_in(result: dict[str, Any], cpu: dict[str, float]) -> float:
    """A server's cores busy during a load run's timed part: its CPU over the run's seconds
    (the load process's start-up, when the server idles, left out: runs made in parts are
    short, and that second would count against them)."""
    seconds = float(result.get("seconds") or 0.0)
    return cpu.get("cpu_seconds", 0.0) / seconds if seconds else cpu.get("cores", 0.0)


def write_docs(rows: list[Row], sizes: Sizes, results: dict[str, Any],
               profiles: dict[str, str], seconds: float) -> None:  # fmt: skip
    from bench.docs import render  # noqa: PLC0415 - the long text lives apart

    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(
        render(
            markdown_table(rows),
            sizes,
            results,
            profiles,
            machine(results.get("load_before", "?")),
            today(),
            seconds,
        )
    )


def main() -> int:
    sizes = from_env()
    work = Path(tempfile.mkdtemp(prefix="retail-bench-"))
    signal.signal(signal.SIGTERM, _on_term)
    # Ctrl-C stops the run even when started from a shell that ignores SIGINT in background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bench = Bench(sizes, work)
    bench.results["load_before"] = load_average()
    started = time.monotonic()
    finished = False
    print(f"[bench] {'quick' if sizes.quick else 'full'} run; sizes {sizes}", flush=True)
    try:
        bench.run()
        finished = True
    except (KeyboardInterrupt, TerminatedError):
        print("\n[bench] interrupted: stopping everything it started", flush=True)
        return 130
    finally:
        bench.stop()
        if finished and not bench.errors and not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"[bench] logs kept in {work}", flush=True)
    elapsed = time.monotonic() - started
    rows = rows_for(bench.results, bench.errors, sizes)
    print()
    print(console_table(rows))
    print(f"\n[bench] whole run {elapsed:.0f} s", flush=True)
    foreign = bench.results.get("foreign", {})
    if foreign.get("average_cores", 0.0) > 0.1:
        print(
            f"[bench] WARNING: other processes used {foreign['average_cores']:.2f} cores on "
            f"average (peak {foreign['peak_cores']:.2f}) during the run: the figures are low",
            flush=True,
        )
    write_docs(rows, sizes, bench.results, bench.profiles, elapsed)
    print(f"[bench] table written to {DOCS.relative_to(REPO_ROOT)}", flush=True)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())

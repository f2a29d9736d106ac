"""Rebuild: replay the event topics from their start into fresh tables, and compare views.

The live projector's consumer group is not touched: the rebuild reads every partition by
assignment up to the end offsets seen when it started, through the same `Projector.apply` the
live path uses, so live and rebuilt views come from one code path.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.context import ForkContext, SpawnContext
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine, select

from projections.db import create_schema, drop_schema, make_engine
from projections.models import Base, ConsumerOffset
from projections.projector import Projector
from projections.record_batches import faster_records

# Bookkeeping that differs between a live and a rebuilt projection by design.
NOT_COMPARED = frozenset({ConsumerOffset.__tablename__, "stream_gap"})


@dataclass(frozen=True)
class RebuildResult:
    records: int
    applied: int
    dead_letters: int
    seconds: float
    processes: str = "one"  # or how the replaying processes started: "fork" or "spawn"


# Below this many records one process replays everything: starting more costs more than it saves.
PARALLEL_FROM = 100_000
_Slice = list[tuple[str, int, int]]  # (topic, partition, end offset) of one replaying process


def rebuild(
    bootstrap: str,
    topics: Sequence[str],
    engine: Engine,
    progress: Callable[[int, int], None] = lambda done, total: None,
    timeout: float = 3600.0,
    processes: int | None = None,
) -> RebuildResult:
    """Replays `topics` into `engine`'s tables, which are dropped and created afresh.

    Large replays are split by partition over `processes` (default: one per core, for
    100,000 records or more) that write into the same tables, as the members of one
    consumer group do: every event of a stream is on one partition, so each stream's
    versions are still applied in order, by one process. Secondary indexes are made once
    the rows are in, which is quicker than keeping them up to date row by row."""
    started = time.monotonic()
    drop_schema(engine)
    create_schema(engine)
    deferred = [index for table in Base.metadata.sorted_tables for index in table.indexes]
    for index in deferred:
        index.drop(engine)
    consumer = _consumer(bootstrap)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    total = sum(ends.values())
    if processes is None:
        processes = (os.cpu_count() or 1) if total >= PARALLEL_FROM else 1
    slices = _split([(tp.topic, tp.partition, ends[tp]) for tp in partitions], processes)
    deadline = started + timeout
    how = "one"
    if len(slices) > 1:
        context = _context()
        how = context.get_start_method()
        records, applied, rejected = _replay_in_processes(
            context, bootstrap, engine, slices, deadline, progress, total
        )
    else:
        writer = _bulk_engine(engine)
        try:
            records, applied, rejected = _replay(
                bootstrap, writer or engine, slices[0] if slices else [], deadline, progress,
                total,
            )  # fmt: skip
        finally:
            if writer is not None:
                writer.dispose()
    for index in deferred:
        index.create(engine)
    return RebuildResult(records, applied, rejected, time.monotonic() - started, how)


def _bulk_engine(engine: Engine) -> Engine | None:
    """A bulk-loading engine on the same SQLite file (None when it is not one)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return make_engine(url.render_as_string(hide_password=False), create=False, bulk=True)


def _consumer(bootstrap: str) -> KafkaConsumer:
    return faster_records(KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="retail-rebuild",
        max_poll_records=5000, fetch_max_bytes=64 * 1024 * 1024,
    ))  # fmt: skip


def _split(partitions: _Slice, processes: int) -> list[_Slice]:
    """Partitions with records, dealt to at most `processes` slices of about equal records."""
    loaded = sorted((p for p in partitions if p[2] > 0), key=lambda p: -p[2])
    slices: list[_Slice] = [[] for _ in range(max(1, min(processes, len(loaded))))]
    for partition in loaded:
        min(slices, key=lambda s: sum(end for _, _, end in s)).append(partition)
    return [s for s in slices if s]


def _replay(
    bootstrap: str,
    engine: Engine,
    partitions: _Slice,
    deadline: float,
    progress: Callable[[int, int], None],
    total: int,
) -> tuple[int, int, int]:
    """Reads `partitions` from their start to the given end offsets through the projector;
    answers the records read, events applied and records dead-lettered."""
    ends = {TopicPartition(topic, p): end for topic, p, end in partitions}
    done = 0
    progress(0, total)
    if not ends:
        return 0, 0, 0
    projector = Projector(engine, consumer=None, group="rebuild", fresh=True)
    consumer = _consumer(bootstrap)
    try:
        consumer.assign(list(ends))
        consumer.seek_to_beginning(*ends)
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError("the rebuild did not finish in time")
            polled = consumer.poll(timeout_ms=500)
            records: list[Any] = []
            for tp, rs in polled.items():  # a partition's records come in offset order
                end = ends[tp]
                records.extend(rs if rs[-1].offset < end else [r for r in rs if r.offset < end])
            if records:
                projector.apply(records)
                done += len(records)
                progress(done, total)
        projector.write_versions()
    finally:
        projector.close()
        consumer.close()
    return done, projector.stats.applied, projector.stats.rejected


def _replay_in_processes(
    context: ForkContext | SpawnContext,
    bootstrap: str,
    engine: Engine,
    slices: list[_Slice],
    deadline: float,
    progress: Callable[[int, int], None],
    total: int,
) -> tuple[int, int, int]:
    # No open connection of this process's crosses a fork: SQLite's own state for a file
    # open in the parent would be shared with the child's connections to it.
    engine.dispose()
    messages = context.Queue()
    url = engine.url.render_as_string(hide_password=False)
    workers = [
        context.Process(
            target=_replay_worker, args=(bootstrap, url, part, deadline - time.monotonic(),
                                         n, messages),
            name=f"rebuild-{n}", daemon=True,
        )
        for n, part in enumerate(slices)
    ]  # fmt: skip
    done = [0] * len(workers)
    results: dict[int, tuple[int, int, int]] = {}
    try:
        for worker in workers:
            worker.start()
        progress(0, total)
        while len(results) < len(workers):
            if time.monotonic() > deadline:
                raise TimeoutError("the rebuild did not finish in time")
            try:
                n, kind, payload = messages.get(timeout=0.5)
            except queue.Empty:
                if any(w.exitcode not in (None, 0) for w in workers):
                    raise RuntimeError("a rebuild process died") from None
                continue
            if kind == "failed":
                raise RuntimeError(f"rebuild process {n} failed: {payload}")
            if kind == "done":
                results[n] = payload
            else:
                done[n] = payload
                progress(sum(done), total)
    finally:
        for worker in workers:
            if worker.pid is None:
                continue  # never started
            if worker.is_alive():
                worker.terminate()
            worker.join(10)
        messages.close()
        messages.cancel_join_thread()
    return (
        sum(r[0] for r in results.values()),
        sum(r[1] for r in results.values()),
        sum(r[2] for r in results.values()),
    )


def _context() -> ForkContext | SpawnContext:
    """How the replaying processes start: forked from a process with no other threads (a
    lock another thread held at the fork would stay held in the child), else spawned.

    A spawned process imports the projector and its caller's main module again: 1.0 s for
    `projections.rebuild` alone, 1.4 s for the bench's pipeline, both cores busy with it;
    a fork starts in milliseconds with all of that imported."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _replay_worker(
    bootstrap: str, url: str, partitions: _Slice, seconds: float, n: int, messages: Any
) -> None:
    """One replaying process: its partitions into the shared tables, progress to `messages`."""
    engine = make_engine(url, create=False, bulk=True)
    # This process's start-up objects live until it ends: out of every later collection.
    gc.collect()
    gc.freeze()
    try:
        result = _replay(
            bootstrap, engine, partitions, time.monotonic() + seconds,
            lambda done, _total: messages.put((n, "progress", done)), 0,
        )  # fmt: skip
        messages.put((n, "done", result))
    except BaseException as error:  # reported to the parent, which stops the others
        messages.put((n, "failed", f"{type(error).__name__}: {error}"))
    finally:
        engine.dispose()


def differences(live: Engine, rebuilt: Engine, limit: int = 20) -> list[str]:
    """Row-for-row differences between two sets of views (empty when they are equal)."""
    found: list[str] = []
    for name, table in Base.metadata.tables.items():
        if name in NOT_COMPARED:
            continue
        keys = [c.name for c in table.primary_key.columns]
        others = [c for c in table.columns if c.name not in keys]
        query = select(*[table.c[k] for k in keys], *others)
        with live.connect() as a, rebuilt.connect() as b:
            left = {tuple(r[: len(keys)]): tuple(r) for r in a.execute(query).all()}
            right = {tuple(r[: len(keys)]): tuple(r) for r in b.execute(query).all()}
        for key in sorted(set(left) | set(right), key=repr):
            if left.get(key) != right.get(key):
                found.append(f"{name} {key}: live {left.get(key)} != rebuilt {right.get(key)}")
                if len(found) >= limit:
                    return found
    return found

"""Engines for the read models: SQLite (embedded default) or PostgreSQL, by URL."""

from __future__ import annotations

import contextlib
import itertools
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Table, create_engine, event, inspect
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url

from projections.models import RETIRED_INDEXES, VIEWS, Base, FactEvent, FactLine

log = logging.getLogger(__name__)


def make_engine(url: str, *, create: bool = True, bulk: bool = False) -> Engine:
    """An engine for the views at `url`. `bulk` is for a rebuild's fresh SQLite file, which
    nothing reads until it is complete: no syncs to disk and a large page cache."""
    parsed = make_url(url)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Room in each connection's statement cache for BulkWriter's grouped upserts (a
        # statement per row count, up to 64) beside the others (Python's default: 128).
        options["connect_args"] = {
            "timeout": 30, "check_same_thread": False, "cached_statements": 256,
        }  # fmt: skip
    elif parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        options["pool_pre_ping"] = True
    engine = create_engine(parsed, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_bulk_pragmas if bulk else _sqlite_pragmas)
    if create:
        create_schema(engine)
    return engine


def create_schema(engine: Engine) -> None:
    """The views' tables, indexes and SQL views, made where missing; a database an earlier
    version made is brought to this shape (`_migrate`)."""
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        for name in RETIRED_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        # Processes opening the database at once (the API's and the projector's) take turns.
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # DDL above: no transaction open yet
        else:
            conn.exec_driver_sql("LOCK TABLE fact_event IN EXCLUSIVE MODE")
        _migrate(conn)
        made = set(inspect(conn).get_view_names())
        for name, query in VIEWS.items():
            if name not in made:
                conn.exec_driver_sql(f"CREATE VIEW {name} AS {query}")


def drop_schema(engine: Engine) -> None:
    """Drops every view table and SQL view (a rebuild starts from none), an earlier
    version's table of a view's name too."""
    with engine.begin() as conn:
        tables = set(inspect(conn).get_table_names())
        for name in VIEWS:
            conn.exec_driver_sql(f"DROP {'TABLE' if name in tables else 'VIEW'} IF EXISTS {name}")
    Base.metadata.drop_all(engine)


# The line number ending a fact's id, and what comes before it (its event's ids).
_IDS = "rtrim(id, '0123456789')"
_LINE = f"CAST(substr(id, length({_IDS}) + 1) AS INTEGER)"


def _migrate(conn: Connection) -> None:
    """Earlier versions kept the sales facts in one wide `sales_fact` table: its rows are
    moved into `fact_event` and `fact_line` (a fact's id is its event's ids and its line
    number) and the table dropped, in the caller's transaction."""
    if "sales_fact" not in inspect(conn).get_table_names():
        return
    shared = ", ".join(c.name for c in FactEvent.__table__.columns if c.name != "ids")
    own = ", ".join(c.name for c in FactLine.__table__.columns if c.name not in ("ids", "line"))
    conn.exec_driver_sql(
        f"INSERT INTO fact_event (ids, {shared}) SELECT DISTINCT {_IDS}, {shared} FROM sales_fact"
    )
    conn.exec_driver_sql(
        f"INSERT INTO fact_line (ids, line, {own}) SELECT {_IDS}, {_LINE}, {own} FROM sales_fact"
    )
    conn.exec_driver_sql("DROP TABLE sales_fact")
    log.info("sales facts moved from the sales_fact table into fact_event and fact_line")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets queries read while the projector writes; NORMAL is durable at each checkpoint
    # and, with WAL, never corrupts: a crash loses at most the last commits, offsets with them.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_bulk_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # A crash during a rebuild means running it again, so nothing is synced before the end;
    # 64 MB of cache keeps the random-keyed indexes of large tables in memory.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


class WalCheckpointer:
    """Copies a SQLite file's write-ahead log into the file from a thread of its own.

    SQLite otherwise checkpoints inside the commit that takes the log past 1,000 pages, and
    the writer waits for it: in the projector that was about four fifths of its commit time
    (1.06 s of 5.2 s for 100,000 records, 0.20 s without). The writer turns its own
    checkpoints off (`take_over`); this thread runs a PASSIVE checkpoint, which never blocks
    the writer or a reader, every `every` seconds. A writer that never pauses can keep the
    log from starting over (it only does when a transaction begins with every frame copied),
    so once the log holds more than `RESTART_PAGES` the thread runs a RESTART checkpoint,
    which waits for the writer's current transaction, copies the few frames left and lets
    the next one write from the log's start; `journal_size_limit` then truncates the file.
    It holds the writer off while it waits for readers, so it waits `RESTART_WAIT` at most
    and is tried again at the next tick (with a 30 s wait, a bench run had a projection lag
    p99 of 482 ms at half load; the API polls the views every few ms).
    A checkpoint that fails is logged and tried again at the next tick."""

    LOG_LIMIT = 64 * 1024 * 1024
    RESTART_PAGES = 16_384  # 64 MB of 4 kB pages
    RESTART_WAIT = 0.05  # seconds

    def __init__(self, path: str, every: float = 0.2) -> None:
        self.path = path
        self.every = every
        self.checkpoints = 0
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_engine(cls, engine: Engine) -> WalCheckpointer | None:
        """One for a SQLite file's engine; None for anything else (PostgreSQL, memory)."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return cls(str(url.database))

    def take_over(self, conn: Connection) -> None:
        """Turns the checkpoints of `conn`'s SQLite connection off (once per connection) and
        makes sure the thread runs."""
        if not conn.info.get("wal_checkpointer"):
            conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            conn.exec_driver_sql(f"PRAGMA journal_size_limit={self.LOG_LIMIT}")
            conn.info["wal_checkpointer"] = True
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="wal-checkpoint", daemon=True
                    )
                    self._thread.start()

    def stop(self) -> None:
        """Stops the thread after a last checkpoint."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        # The busy timeout bounds a RESTART's wait for readers (see the class docstring).
        with contextlib.closing(sqlite3.connect(self.path, timeout=self.RESTART_WAIT)) as conn:
            while True:
                stopping = self._stop.wait(self.every)
                try:
                    _, pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if pages > self.RESTART_PAGES and not stopping:
                        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                        self.restarts += not busy
                    self.checkpoints += 1
                except sqlite3.Error as error:
                    log.warning("WAL checkpoint of %s failed (tried again): %s", self.path, error)
                if stopping:
                    return


_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@dataclass(frozen=True)
class _Plan:
    sql: str
    converts: tuple[tuple[int, Callable[[Any], Any]], ...]  # (index in a row, bind processor)
    defaults: tuple[Any, ...]  # values of the defaulted columns the rows leave out
    # An upsert's statement is f"{head}({the row's placeholders}) {conflict}".
    head: str = ""
    conflict: str = ""

    def params(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        return self.tuple_params([row.values() for row in rows])

    def tuple_params(self, rows: Iterable[Iterable[Any]]) -> list[tuple[Any, ...]]:
        """`params` of rows given as their values in the plan's column order."""
        defaults, converts = self.defaults, self.converts
        if not converts:
            return [(*row, *defaults) for row in rows]
        params = []
        for row in rows:
            values = [*row, *defaults]
            for index, process in converts:
                values[index] = process(values[index])
            params.append(tuple(values))
        return params

    def group_params(
        self, split: int, groups: Iterable[tuple[Sequence[tuple[Any, ...]], tuple[Any, ...]]]
    ) -> list[tuple[Any, ...]]:
        """`params` of rows given in groups (see BulkWriter.insert_groups): the first `split`
        columns are each row's own, the others the group's; those are converted once."""
        defaults = self.defaults
        own = [(index, process) for index, process in self.converts if index < split]
        shared = [(index - split, process) for index, process in self.converts if index >= split]
        params: list[tuple[Any, ...]] = []
        for rows, common in groups:
            if shared:
                values = list(common)
                for index, process in shared:
                    values[index] = process(values[index])
                tail = (*values, *defaults)
            else:
                tail = (*common, *defaults)
            if not own:
                params.extend([row + tail for row in rows])
                continue
            for row in rows:
                values = list(row)
                for index, process in own:
                    values[index] = process(values[index])
                params.append((*values, *tail))
        return params


_SQLITE_DATETIME = sqlite.DATETIME._storage_format


def _sqlite_datetime(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLite's DateTime bind processor with its default storage format, for datetimes
    through the C-coded isoformat: the same text (year to microsecond, no offset) in about
    half the time. Anything else goes to `process`."""

    last: list[Any] = [None, None]  # the last datetime and its text: rows of one event share it

    def fast(value: Any) -> Any:
        if value is last[0]:
            return last[1]
        if type(value) is datetime:
            text = value.isoformat(" ", "microseconds")[:26]
            last[0], last[1] = value, text
            return text
        return process(value)

    return fast


def _converted(
    row: tuple[Any, ...], converts: Sequence[tuple[int, Callable[[Any], Any]]]
) -> tuple[Any, ...]:
    values = list(row)
    for index, process in converts:
        values[index] = process(values[index])
    return tuple(values)


def _by_columns(
    rows: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return groups


class BulkWriter:
    """Upserts and updates of many rows with one `executemany` per table and column set, the
    statements built once. The same SQL and stored values as SQLAlchemy Core's
    insert().on_conflict_do_update() (Python-side column defaults and the dialect's bind
    processors applied), without Core's work per row."""

    def __init__(self, dialect: Dialect) -> None:
        if dialect.paramstyle not in _PLACEHOLDERS:
            raise ValueError(f"no bulk statements for paramstyle {dialect.paramstyle!r}")
        self.dialect = dialect
        self._mark = _PLACEHOLDERS[dialect.paramstyle]
        self._highest = "greatest" if dialect.name == "postgresql" else "max"
        self._plans: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], _Plan] = {}
        # SQLite numbers its parameters (?NNN): a value can be bound once for many rows.
        self._numbered = dialect.name == "sqlite" and dialect.paramstyle == "qmark"
        self._numbered_statements: dict[tuple[str, int], str] = {}

    def upsert(
        self,
        conn: Connection,
        table: Table,
        rows: Iterable[Mapping[str, Any]],
        keep_highest: tuple[str, ...] = (),
    ) -> None:
        """INSERT ... ON CONFLICT (primary key) DO UPDATE SET the rows' columns; a column in
        `keep_highest` keeps the higher of the stored and the new value."""
        for names, group in _by_columns(rows).items():
            plan = self._upsert_plan(table, names, keep_highest)
            conn.exec_driver_sql(plan.sql, plan.params(group))

    def insert(
        self,
        conn: Connection,
        table: Table,
        names: tuple[str, ...],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:
        """Inserts rows that never change once written (an event's fact_event row), each the
        values of the columns `names` in that order; a row whose key is stored already is
        left as it is (ON CONFLICT DO NOTHING): it was written from the same event."""
        if rows:
            plan = self._upsert_plan(table, names, (), keep_stored=True)
            conn.exec_driver_sql(plan.sql, plan.tuple_params(rows))

    def insert_groups(
        self,
        conn: Connection,
        table: Table,
        own: tuple[str, ...],
        shared: tuple[str, ...],
        groups: Iterable[tuple[Sequence[tuple[Any, ...]], tuple[Any, ...]]],
    ) -> None:
        """Inserts rows that never change once written (an event's sales facts), given in
        groups whose rows share the values of some columns: each group is its rows' own
        values (tuples of the columns `own`, in that order) and the values of the columns
        `shared` that every row of it has. A row whose key is stored already is left as it
        is (ON CONFLICT DO NOTHING): it was written from the same event."""
        plan = self._upsert_plan(table, own + shared, (), keep_stored=True)
        if self._numbered:
            self._insert_numbered(conn, plan, len(own), len(shared), groups)
            return
        params = plan.group_params(len(own), groups)
        if params:
            conn.exec_driver_sql(plan.sql, params)

    def _insert_numbered(
        self,
        conn: Connection,
        plan: _Plan,
        split: int,
        shared: int,
        groups: Iterable[tuple[Sequence[tuple[Any, ...]], tuple[Any, ...]]],
    ) -> None:
        """`insert_groups` for SQLite: a group's rows in one statement (`_numbered_sql`), the
        values they share bound once: each row binds its 10 values instead of 21, and a
        statement runs once a group instead of once a row. Measured with valgrind's
        cachegrind on a bench run's records: its 100,000 flash-sale facts (5,593 groups of
        1-62 rows) took 22,100 instead of 41,100 instructions a fact, building the
        parameters included.

        The statement is INSERT OR FAIL ... DO NOTHING: a statement that writes many rows
        and may abort half-way needs a statement journal to undo its own rows (an upsert's
        DO UPDATE always may), and SQLite keeps it in a temporary file once it outgrows 64
        kB: 148,000 page writes to such files for those 76,501 records, against none. OR
        FAIL stops at a failed constraint without undoing the statement's earlier rows;
        the error then rolls back the caller's whole transaction (the projector's batch)."""
        own = [(index, process) for index, process in plan.converts if index < split]
        common_converts = [(i - split, process) for i, process in plan.converts if i >= split]
        tails = shared + len(plan.defaults)  # the values bound once a statement
        size = self._numbered_rows(tails, split)
        flat = itertools.chain.from_iterable
        cursor = conn.connection.cursor()
        try:
            for given, common in groups:
                if not given:
                    continue
                tail = [*common, *plan.defaults]
                for index, process in common_converts:
                    tail[index] = process(tail[index])
                rows = [_converted(row, own) for row in given] if own else given
                for start in range(0, len(rows), size):
                    chunk = rows[start : start + size] if len(rows) > size else rows
                    sql = self._numbered_sql(plan, tails, split, len(chunk))
                    cursor.execute(sql, [*tail, *flat(chunk)])
        finally:
            cursor.close()

    # SQLite's lowest limit on a statement's parameters (SQLITE_MAX_VARIABLE_NUMBER before
    # version 3.32), and the most rows in one statement: each row count is a statement of
    # its own in the connection's statement cache (`make_engine`).
    MAX_PARAMETERS = 999
    MAX_GROUP_ROWS = 64

    def _numbered_rows(self, shared: int, split: int) -> int:
        return max(1, min(self.MAX_GROUP_ROWS, (self.MAX_PARAMETERS - shared) // max(split, 1)))

    def _numbered_sql(self, plan: _Plan, shared: int, split: int, rows: int) -> str:
        """The upsert of `rows` rows in one statement: the shared values are parameters 1 to
        `shared`, then come each row's own `split` values, row after row."""
        sql = self._numbered_statements.get((plan.sql, rows))
        if sql is None:
            common = [f"?{n}" for n in range(1, shared + 1)]
            values = []
            for row in range(rows):
                first = shared + row * split
                marks = [f"?{first + n}" for n in range(1, split + 1)] + common
                values.append(f"({', '.join(marks)})")
            sql = f"{plan.head}{', '.join(values)} {plan.conflict}"
            self._numbered_statements[(plan.sql, rows)] = sql
        return sql

    def update(self, conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> None:
        """UPDATE the other columns of existing rows, found by primary key."""
        keys = [c.name for c in table.primary_key.columns]
        for names, group in _by_columns(rows).items():
            sets = tuple(n for n in names if n not in keys)
            plan = self._plans.get(("update", table.name, names, ()))
            if plan is None:
                plan = self._plans[("update", table.name, names, ())] = self._update_plan(
                    table, sets, keys
                )
            # The statement takes the SET values first, then the key.
            ordered = [{n: row[n] for n in (*sets, *keys)} for row in group]
            conn.exec_driver_sql(plan.sql, plan.params(ordered))

    def _quote(self, name: str) -> str:
        return str(self.dialect.identifier_preparer.quote(name))

    def _converts(
        self, table: Table, names: Sequence[str]
    ) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
        """The dialect's bind processor of each column that has one, by position."""
        dialect = self.dialect
        found = []
        for index, name in enumerate(names):
            impl = table.c[name].type.dialect_impl(dialect)
            process = impl.bind_processor(dialect)
            if process is None:
                continue
            if isinstance(impl, sqlite.DATETIME) and impl._storage_format == _SQLITE_DATETIME:
                found.append((index, _sqlite_datetime(process)))
            else:
                found.append((index, process))
        return tuple(found)

    def _upsert_plan(
        self,
        table: Table,
        names: tuple[str, ...],
        keep_highest: tuple[str, ...],
        keep_stored: bool = False,
    ) -> _Plan:
        """The upsert of `names` into `table`, built once; `keep_stored`: an insert that
        leaves a stored row as it is (see `insert_groups`)."""
        key = ("insert" if keep_stored else "upsert", table.name, names, keep_highest)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._new_upsert(table, names, keep_highest, keep_stored)
        return plan

    def _new_upsert(
        self,
        table: Table,
        names: tuple[str, ...],
        keep_highest: tuple[str, ...],
        keep_stored: bool = False,
    ) -> _Plan:
        q, name = self._quote, self.dialect.identifier_preparer.format_table(table)
        keys = [c.name for c in table.primary_key.columns]
        # What Core inserts for a column the row leaves out: its scalar Python-side default.
        defaulted = [
            c for c in table.columns
            if c.name not in names and c.default is not None and c.default.is_scalar
        ]  # fmt: skip
        defaults = [c.default.arg for c in defaulted]  # type: ignore[union-attr]
        for index, process in self._converts(table, [c.name for c in defaulted]):
            defaults[index] = process(defaults[index])
        columns = [*names, *(c.name for c in defaulted)]
        sets = [] if keep_stored else [
            f"{q(n)} = {self._highest}({name}.{q(n)}, excluded.{q(n)})"
            if n in keep_highest
            else f"{q(n)} = excluded.{q(n)}"
            for n in names
            if n not in keys
        ]  # fmt: skip
        conflict = f"ON CONFLICT ({', '.join(q(k) for k in keys)}) " + (
            f"DO UPDATE SET {', '.join(sets)}" if sets else "DO NOTHING"
        )
        insert = "INSERT OR FAIL" if keep_stored and self._numbered else "INSERT"
        head = f"{insert} INTO {name} ({', '.join(q(c) for c in columns)}) VALUES "
        sql = f"{head}({', '.join([self._mark] * len(columns))}) {conflict}"
        return _Plan(sql, self._converts(table, names), tuple(defaults), head, conflict)

    def _update_plan(self, table: Table, sets: tuple[str, ...], keys: list[str]) -> _Plan:
        q, name = self._quote, self.dialect.identifier_preparer.format_table(table)
        sql = (
            f"UPDATE {name} SET {', '.join(f'{q(n)} = {self._mark}' for n in sets)} "
            f"WHERE {' AND '.join(f'{q(k)} = {self._mark}' for k in keys)}"
        )
        return _Plan(sql, self._converts(table, [*sets, *keys]), ())


def select_versions(conn: Connection, streams: Iterable[str], chunk: int = 500) -> dict[str, int]:
    """The applied version of each of `streams` that has one."""
    ids = list(streams)
    found: dict[str, int] = {}
    mark = _PLACEHOLDERS[conn.dialect.paramstyle]
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        rows = conn.exec_driver_sql(
            "SELECT stream_id, version FROM applied_stream "
            f"WHERE stream_id IN ({', '.join([mark] * len(part))})",
            tuple(part),
        ).tuples()
        found.update(rows.all())
    return found

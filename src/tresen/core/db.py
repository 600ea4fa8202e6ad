"""Database engines for SQLite (embedded default, WAL) and PostgreSQL (asyncpg).

Writes go through :meth:`Database.write`, reads through :meth:`Database.read`. On SQLite all
writes of a process share one connection and start with ``BEGIN IMMEDIATE``: SQLite allows one
writer at a time anyway, and taking the write lock up front avoids the lock-upgrade deadlocks
of deferred transactions. Readers run beside the writer thanks to WAL.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec
import sqlalchemy.exc
from sqlalchemy import (
    ARRAY,
    String,
    Table,
    bindparam,
    column,
    event,
    func,
    literal_column,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.sql.expression import Executable
from sqlalchemy.sql.selectable import NamedFromClause, Select
from sqlalchemy.types import TypeEngine
from sqlalchemy.util.concurrency import greenlet_spawn

from tresen.core.logging import get_logger

__all__ = [
    "NAMING_CONVENTION",
    "Database",
    "DriverStatement",
    "Newest",
    "Rows",
    "driver_insert",
    "driver_insert_numbered",
    "hold_lock",
    "key_list",
    "key_list_param",
    "key_pair_params",
    "key_pairs",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint and index names of every schema (migrations name them alike)."""

SQLITE_BUSY_TIMEOUT_MS = 30_000

CHECKPOINT_INTERVAL_S = 1.0
"""How often a SQLite database's write-ahead log is copied into its file (see
:class:`_WalCheckpointer`)."""

WAL_AUTOCHECKPOINT_PAGES = 16_384
"""The log's size (pages of 4 KiB) at which a commit checkpoints it itself: only if the
background checkpoint falls behind (SQLite's default is 1,000)."""

log = get_logger("tresen.db")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def key_pairs(dialect: str, first: TypeEngine[Any], second: TypeEngine[Any]) -> NamedFromClause:
    """A table of (``a``, ``b``) rows bound from :func:`key_pair_params`, to join a table on
    two columns at once.

    A statement built on it has the same text for any number of pairs, so it is compiled
    once and its compiled form cached (a condition with one branch per key would be built
    and compiled anew for every batch). SQLite reads the pairs from one JSON parameter
    (``json_each``), PostgreSQL from one array per column (``unnest``). Row-value IN is
    avoided on purpose: SQLite 3.40 returns no rows for a one-row ``(a, b) IN (VALUES (?, ?))``
    when an index covers both columns.
    """
    if dialect == "sqlite":
        rows = func.json_each(bindparam("pairs", type_=String())).table_valued("value")
        return (
            select(
                type_coerce(func.json_extract(rows.c.value, literal_column("'$[0]'")), first).label(
                    "a"
                ),
                type_coerce(
                    func.json_extract(rows.c.value, literal_column("'$[1]'")), second
                ).label("b"),
            )
            .select_from(rows)
            .subquery("pairs")
        )
    return (
        func.unnest(
            bindparam("pairs_a", type_=ARRAY(first)), bindparam("pairs_b", type_=ARRAY(second))
        )
        .table_valued(column("a", first), column("b", second))
        .render_derived(name="pairs")
    )


def key_pair_params(dialect: str, pairs: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    """The parameters of a statement built on :func:`key_pairs` that name ``pairs``."""
    if dialect == "sqlite":
        rows = list(pairs)
        for row in rows:
            for value in row:
                _check_int64(value)
        return {"pairs": _JSON.encode(rows).decode()}
    firsts: list[Any] = []
    seconds: list[Any] = []
    for a, b in pairs:
        firsts.append(a)
        seconds.append(b)
    return {"pairs_a": firsts, "pairs_b": seconds}


def key_list(dialect: str, of: TypeEngine[Any], name: str = "keys") -> Select[Any]:
    """A one-column subquery of the keys bound from :func:`key_list_param`, for ``IN``.

    Like :func:`key_pairs`, its text is the same for any number of keys (an expanding ``IN``
    list is rendered anew for every length): compiled once, and on PostgreSQL prepared once
    per connection. SQLite reads the keys from one JSON parameter, PostgreSQL from one array.
    """
    if dialect == "sqlite":
        rows = func.json_each(bindparam(name, type_=String())).table_valued("value")
        return select(type_coerce(rows.c.value, of)).select_from(rows)
    keys = (
        func.unnest(bindparam(name, type_=ARRAY(of)))
        .table_valued(column("k", of))
        .render_derived(name="keys")
    )
    return select(keys.c.k).select_from(keys)


def key_list_param(dialect: str, keys: Iterable[Any]) -> Any:
    """The value of a :func:`key_list` parameter that names ``keys``."""
    values = list(keys)
    if dialect == "sqlite":
        for value in values:
            _check_int64(value)
        return _JSON.encode(values).decode()
    return values


_JSON = msgspec.json.Encoder()


def _check_int64(value: object) -> None:
    if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
        # Refused as sqlite3 refuses such a parameter (JSON would carry it and match nothing).
        raise OverflowError("Python int too large to convert to SQLite INTEGER")


class DriverStatement:
    """A statement compiled once per dialect and run on the database driver itself.

    The group commit runs the same dozen statements for every batch; through SQLAlchemy's
    execution (an execution context, parameter and result processing, and on PostgreSQL the
    adapter's own preparation) each cost the event loop ~50 µs more than the driver's work.
    A driver statement is built with SQLAlchemy (so it names this schema's tables and columns
    as every other statement does), compiled once to the driver's own text and parameter
    order, and run on the connection a :class:`Database` transaction holds: on SQLite's
    ``sqlite3`` connection (on the event loop's thread when the transaction is ``inline``),
    on PostgreSQL with asyncpg's prepared statements. Its text must not depend on its
    parameters (use :func:`key_list` and :func:`key_pairs`, not expanding ``IN`` lists), and
    its parameters and rows are the driver's: plain ints, strings and bytes, rows as tuples.
    """

    __slots__ = ("_build", "_compiled")

    def __init__(self, build: Callable[[str], Executable]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, tuple[str, ...]]] = {}

    def text(self, conn: AsyncConnection) -> tuple[str, tuple[str, ...]]:
        """The driver's text of this statement and the order of its parameters."""
        dialect = conn.dialect
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self._build(dialect.name).compile(dialect=dialect)  # type: ignore[attr-defined]
            if "POSTCOMPILE" in compiled.string:
                raise ValueError("a driver statement's text must not depend on its parameters")
            found = (compiled.string, tuple(compiled.positiontup or ()))
            self._compiled[dialect.name] = found
        return found

    async def rows(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Any]:
        """Run the statement in ``conn``'s transaction; every row it returns."""
        sql, names = self.text(conn)
        return await _driver_run(conn, sql, tuple(params[name] for name in names), many=False)


async def driver_insert(
    conn: AsyncConnection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` (tuples of ``columns``) into ``table`` in ``conn``'s transaction, on the
    driver itself (see :class:`DriverStatement`).

    Handed to the driver as tuples, the rows skip SQLAlchemy's per-row parameter processing.
    SQLite takes one row per run of the statement; PostgreSQL all of them in one run, a
    column per array parameter (``unnest``): run once per row, the executor's start and end
    cost it more than storing the row.
    """
    if not rows:
        return
    dialect = conn.dialect.name
    sql = _insert_text(dialect, table, columns)
    if dialect == "sqlite":
        await _driver_run(conn, sql, rows, many=True)
    else:
        await _driver_run(conn, sql, [list(c) for c in zip(*rows, strict=True)], many=False)


Rows = tuple[Table, tuple[str, ...], Sequence[tuple[Any, ...]]]
"""Rows to insert: the table, the columns, a tuple of values per row."""


async def hold_lock(conn: AsyncConnection, key: str, *, shared: bool = False) -> None:
    """PostgreSQL: hold ``key`` until the transaction ends (exclusively, or ``shared`` with
    others that share it), for what no row can be locked for. Advisory locks are the whole
    database's: the lock's number is a hash of the key and of the schema the connection works
    in, so that relays in different schemas of one database never wait for each other. SQLite
    has a single writer and needs no lock."""
    if conn.dialect.name == "sqlite":
        return
    kind = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await conn.execute(
        text(f"SELECT {kind}(hashtextextended(current_schema() || ':' || :key, 0))"),
        {"key": key},
    )


class Newest(msgspec.Struct, frozen=True):
    """With each numbered row, the newest number in its ``column`` group before the
    statement, looked up above a floor per group: ``floors`` maps each value of ``column``
    in the rows (every one) to a number the caller needs nothing at or below; a group with
    no row above its floor gives the floor."""

    column: str
    floors: Mapping[Any, int]


async def driver_insert_numbered(
    conn: AsyncConnection,
    table: Table,
    key: str,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    *,
    also: Rows | None = None,
    returning: tuple[str, ...] = (),
    newest: Newest | None = None,
) -> list[tuple[Any, ...]]:
    """PostgreSQL: insert ``rows`` as :func:`driver_insert` does, each numbered in its
    ``key`` column from that column's sequence, ascending in the order of ``rows``; returns
    a row per row inserted, in that order: its number, then the values of the ``returning``
    expressions (SQL of the table's own columns), then with ``newest`` its newest number
    before the statement (see :class:`Newest`). One statement: taking the numbers first was
    a round trip more.

    ``also``: rows of another table, inserted by the same statement (a data-modifying
    ``WITH``, which PostgreSQL runs once whatever the rest of the statement reads), one
    round trip fewer than inserting them on their own.
    """
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        raise NotImplementedError("SQLite numbers rows by their table's AUTOINCREMENT")
    params = [list(c) for c in zip(*rows, strict=True)]
    first: tuple[Table, tuple[str, ...]] | None = None
    if also is not None and also[2]:
        first = (also[0], also[1])
        params = [list(c) for c in zip(*also[2], strict=True)] + params
    group = None
    if newest is not None:
        group = newest.column
        # A row whose group had no floor would be inserted and not returned.
        if not {row[columns.index(group)] for row in rows} <= newest.floors.keys():
            raise ValueError(f"a floor for every {group} of the rows is needed")
        params += [list(newest.floors), list(newest.floors.values())]
    sql = _numbered_insert_text(table, key, columns, first, returning, group)
    numbered = await _driver_run(conn, sql, params, many=False)
    # The numbers were taken in row order (see _numbered_insert_text), the rows came back in
    # no promised order.
    return sorted((tuple(row) for row in numbered), key=lambda row: int(row[0]))


@functools.cache
def _insert_text(dialect: str, table: Table, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    # Names and types of the schema's own tables and columns, never input.
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in columns)
        return f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608
    return f"INSERT INTO {table.name} ({names}) SELECT * FROM {_unnest(table, columns)}"  # noqa: S608


@functools.cache
def _numbered_insert_text(
    table: Table,
    key: str,
    columns: tuple[str, ...],
    first: tuple[Table, tuple[str, ...]] | None,
    returning: tuple[str, ...],
    group: str | None,
) -> str:
    # PostgreSQL evaluates a SELECT's output list after its ORDER BY ("SELECT", "Notes"): the
    # rows take their numbers in the order given. The sequence is looked up once (OFFSET 0
    # keeps the subquery apart), not once per row, where the look-up cost ten nextvals.
    parts, offset = [], 0
    if first is not None:
        other, other_columns = first
        parts.append(
            f"also AS (INSERT INTO {other.name} ({', '.join(other_columns)})"  # noqa: S608
            f" SELECT * FROM {_unnest(other, other_columns)})"
        )
        offset = len(other_columns)
    values = ", ".join(f"u.{name}" for name in columns)
    insert = (
        f"INSERT INTO {table.name} ({key}, {', '.join(columns)})"  # noqa: S608
        f" SELECT nextval(s.id), {values}"
        f" FROM (SELECT pg_get_serial_sequence('{table.name}', '{key}')::regclass AS id"
        " OFFSET 0) AS s"
        f" CROSS JOIN {_unnest(table, columns, offset)}"
        f" WITH ORDINALITY AS u({', '.join(columns)}, n) ORDER BY u.n"
        f" RETURNING {', '.join((key, *returning))}"
    )
    if group is None:
        return f"WITH {', '.join(parts)} {insert}" if parts else insert
    # Once per group (MATERIALIZED), in the snapshot from before the statement: the newest
    # number above the group's floor, else the floor. The range above a floor holds no rows
    # deleted since the last vacuum, where a walk down from the top stepped over every one.
    floors = offset + len(columns)
    kind = table.columns[group].type.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    # The insert returns the group's column last too, to join on; the WITH names the columns.
    names = [f"r{i}" for i in range(1 + len(returning))]
    insert = f"{insert}, {group}"
    parts += [
        f"numbered ({', '.join(names)}, g) AS ({insert})",
        f"newest AS MATERIALIZED (SELECT f.g, coalesce((SELECT max(t.{key})"  # noqa: S608
        f" FROM {table.name} AS t WHERE t.{group} = f.g AND t.{key} > f.floor), f.floor) AS n"
        f" FROM unnest(${floors + 1}::{kind}[], ${floors + 2}::bigint[]) AS f(g, floor))",
    ]
    selected = ", ".join(f"numbered.{name}" for name in names)
    return (
        f"WITH {', '.join(parts)} SELECT {selected}, newest.n FROM numbered"  # noqa: S608
        " JOIN newest ON newest.g = numbered.g"
    )


def _unnest(table: Table, columns: tuple[str, ...], offset: int = 0) -> str:
    """``unnest`` of one array parameter per column (``$offset+1`` on), typed as the column."""
    pg = postgresql.dialect()  # type: ignore[no-untyped-call]
    arrays = ", ".join(
        f"${i}::{table.columns[name].type.compile(dialect=pg)}[]"
        for i, name in enumerate(columns, offset + 1)
    )
    return f"unnest({arrays})"


async def _driver_run(conn: AsyncConnection, sql: str, params: Any, *, many: bool) -> Sequence[Any]:
    fairy = _pooled(conn)
    if conn.dialect.name == "sqlite":
        driver: _OneTripConnection = fairy.driver_connection
        if driver.inline:
            return _run_sqlite(driver._conn, sql, params, many)[1]
        run = functools.partial(_run_sqlite, driver._conn, sql, params, many)
        result: tuple[Any, list[Any], int, int | None] = await driver._execute(run)  # type: ignore[no-untyped-call]
        return result[1]
    # SQLAlchemy's asyncpg adapter begins its transaction with its first statement.
    adapter = fairy.dbapi_connection
    async with adapter._execute_mutex:
        try:
            if adapter._transaction is None:
                await adapter._start_transaction()
            if many:
                await adapter._connection.executemany(sql, params)
                return []
            rows: Sequence[Any] = await adapter._connection.fetch(sql, *params)
            return rows
        except Exception as exc:
            if adapter._connection.is_closed():
                # Lost (the server restarted, say): the pool replaces it at its next checkout.
                fairy.invalidate(exc, soft=True)
            adapter._handle_exception(exc)  # raises it as the DBAPI's error, as SQLAlchemy does
            raise


_KEYED_SETTINGS = {"enable_seqscan": "off", "jit": "off", "plan_cache_mode": "force_generic_plan"}
"""The settings of the connections of ``keyed`` writes (PostgreSQL)."""


class Database:
    """The engines of one database. They are made with ``hide_parameters``: an error's text
    (and so every log line and traceback that carries it) never holds a statement's values,
    which are account ids, phone numbers and ciphertext."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        pool_size: int = 20,
        schema: str | None = None,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        self.url = url
        self.schema = schema
        self._synchronous = sqlite_synchronous
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self._checkpointer: _WalCheckpointer | None = None
        # write() calls under way, by the engine of their pool.
        self._writes: collections.Counter[Engine] = collections.Counter()
        # Connections kept checked out by their pools' engine (see write(hold=True)).
        self._held: dict[Engine, tuple[Connection, float]] = {}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                self._checkpointer = _WalCheckpointer(parsed.database, checkpoint_interval_s)
            self._writer = self._sqlite_engine(url, sqlite_synchronous, immediate=True, size=1)
            self._reader = self._sqlite_engine(url, sqlite_synchronous, immediate=False, size=4)
            self._keyed = self._keyed_lazy = self._writer
        else:
            settings = {"search_path": schema} if schema else {}
            self._writer = self._reader = self._pg_engine(url, pool_size, settings)
            # Its own few connections, set up once for key look-ups (see write(keyed=True)).
            self._keyed = self._pg_engine(url, 4, {**settings, **_KEYED_SETTINGS})
            # And those of keyed writes that need not wait for the disk (see ``durable``).
            self._keyed_lazy = self._pg_engine(
                url, 4, {**settings, **_KEYED_SETTINGS, "synchronous_commit": "off"}
            )

    @staticmethod
    def _pg_engine(url: str, size: int, settings: dict[str, str]) -> AsyncEngine:
        # Up to ``size`` connections, each opened when a check-out finds none free and kept
        # once opened. With overflow connections (closed when they come back) every burst of
        # check-outs, such as a node's connections reconnecting at once, paid for opening
        # them again: 3.3 ms of the node's CPU and 5 ms of PostgreSQL's each.
        engine = create_async_engine(
            url,
            pool_size=size,
            max_overflow=0,
            hide_parameters=True,
            connect_args={"server_settings": settings} if settings else {},
        )
        _ping_idle_connections(engine)
        return engine

    @staticmethod
    def _sqlite_engine(url: str, synchronous: str, *, immediate: bool, size: int) -> AsyncEngine:
        args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(make_url(url))
        engine = create_async_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=size,
            max_overflow=0,
            hide_parameters=True,
            async_creator=lambda: _connect_sqlite(*args, **kwargs),
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event emit BEGIN itself instead of pysqlite.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            cursor.close()
            _record.info["synchronous"] = synchronous

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            driver: _OneTripConnection = conn.connection.driver_connection
            if not immediate:
                # A reader's BEGIN takes no lock: nothing to wait for, so no trip.
                driver._conn.execute("BEGIN")
            elif not _begin_at_once(driver._conn, "BEGIN IMMEDIATE"):
                # Another process holds the write lock: wait for it in the connection's thread.
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    async def ensure_schema(self, schema: str) -> None:
        """Create a PostgreSQL schema if missing (``schema`` is validated by the settings)."""
        async with self.write() as conn:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))

    @property
    def engine(self) -> AsyncEngine:
        return self._writer

    @asynccontextmanager
    async def write(
        self, *, durable: bool = True, inline: bool = False, hold: bool = False, keyed: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """One write transaction; committed when the block ends without an exception.

        ``durable=False`` is for a transaction whose loss in a power failure (the machine,
        not the process, going down) only repeats work, such as a device's ack that it
        sends again: its commit returns without waiting for the disk. The next durable
        commit's flush writes it too, as the log is written in order.

        ``inline`` (SQLite) runs the transaction's statements on the event loop's thread:
        only ``BEGIN IMMEDIATE`` (which may wait for another process's writer) and the
        commit (which waits for the disk) go to the connection's thread. For transactions
        of a few short, indexed statements, such as the group commit's, where the trips to
        the thread cost more than SQLite's work; never for a statement that may scan.

        ``hold``: the connection stays checked out after the commit, for the next ``hold``
        write, as long as no other write waits for it (the group commit's back-to-back
        batches: a check-out and check-in cost about as much as a small batch's statements).
        Another write on connections of the same pool releases it first (one is kept per
        pool: keyed writes have pools of their own); one held longer than
        :data:`PING_AFTER_IDLE_S` is released rather than used, so that the pool checks it.

        ``keyed`` (PostgreSQL): every statement of the transaction finds its rows by an
        index, whatever the size of the table, so the planner may not scan a table
        (``enable_seqscan`` off; JIT compilation, which a plan of penalized scans would
        trigger, off too). A driver statement is prepared once per connection, and after
        five runs PostgreSQL keeps one plan for it until the table is next analyzed: made
        while a table was small (a young database, the first minute after its creation),
        that plan scanned the whole table on every run as it grew. Keyed writes run on
        connections of their own that have these settings from the start, the durable ones
        and the others on separate connections (setting them per transaction would cost a
        round trip). These connections also plan each statement once
        (``plan_cache_mode=force_generic_plan``): left to choose, PostgreSQL planned the
        group commit's statements anew on every run (their arrays of keys make a generic
        plan look dearer than a custom one), and at one pair that planning was more than
        half of its work per message.
        """
        if self._checkpointer is not None:
            self._checkpointer.start()
        engine = self._engine(keyed, durable)
        self._writes[engine.sync_engine] += 1
        try:
            held = self._take_held(engine.sync_engine) if hold else None
            if held is None:
                await self._release_held(engine.sync_engine)
            keep = self._keep if hold else None
            async with self._write(engine, durable, inline, held, keep) as conn:
                yield conn
        finally:
            self._writes[engine.sync_engine] -= 1

    def _engine(self, keyed: bool, durable: bool) -> AsyncEngine:
        if not keyed:
            return self._writer
        return self._keyed if durable else self._keyed_lazy

    def _take_held(self, engine: Engine) -> Connection | None:
        held = self._held.pop(engine, None)
        if held is None:
            return None
        sync, since = held
        if time.monotonic() - since >= PING_AFTER_IDLE_S:
            self._held[engine] = held  # released by the caller, then checked out anew
            return None
        return sync

    def _keep(self, sync: Connection) -> bool:
        """At the end of a ``hold`` write: keep ``sync`` checked out if no other write on its
        pool is under way (one waiting for the pool would wait for it forever)."""
        if self._writes[sync.engine] > 1 or sync.engine in self._held:
            return False
        self._held[sync.engine] = (sync, time.monotonic())
        return True

    async def _release_held(self, engine: Engine | None = None) -> None:
        """Give a connection kept checked out back to its pool (``engine``'s, else all)."""
        for key in [engine] if engine is not None else list(self._held):
            held = self._held.pop(key, None)
            if held is not None:
                await _to_completion(greenlet_spawn(held[0].close))

    @asynccontextmanager
    async def _write(
        self,
        engine: AsyncEngine,
        durable: bool,
        inline: bool,
        held: Connection | None,
        keep: Callable[[Connection], bool] | None,
    ) -> AsyncIterator[AsyncConnection]:
        if not self.is_sqlite:
            async with _transaction(engine, held=held, keep=keep) as conn:
                if not durable and engine is not self._keyed_lazy:
                    await _driver_run(conn, "SET LOCAL synchronous_commit TO OFF", (), many=False)
                yield conn
            return
        # SQLite takes its safety level only outside a transaction; a connection keeps the
        # last one set, so a durable write sets it back before it begins.
        level = None
        if not durable or self._synchronous != "NORMAL":
            level = self._synchronous if durable else "NORMAL"
        # A commit that does not wait for the disk (WAL, synchronous=NORMAL) takes
        # microseconds: no trip for it either.
        inline_commit = inline and (not durable or self._synchronous in ("NORMAL", "OFF"))

        def prepare(pooled: Any) -> Callable[[], None]:
            if level is not None:
                _sqlite_synchronous(pooled, level)
            driver: _OneTripConnection = pooled.driver_connection
            driver.inline_commit = inline_commit

            def finish() -> None:
                driver.inline_commit = False

            return finish

        async with _transaction(
            self._writer, prepare, ends_at_once=inline_commit, held=held, keep=keep
        ) as conn:
            driver: _OneTripConnection = _pooled(conn).driver_connection
            driver.inline = inline
            try:
                yield conn
            finally:
                driver.inline = False

    @asynccontextmanager
    async def read(self, *, inline: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read-only connection (on SQLite, a reader of its own: reads never wait for the
        writer). ``inline`` (SQLite) runs its statements on the event loop's thread, as for
        :meth:`write`: for a few short, indexed look-ups on the hot path, never a scan."""
        # An inline read ends its transaction itself: checking the connection in then waits
        # for nothing.
        async with _checked_out(self._reader, ends_at_once=inline and self.is_sqlite) as conn:
            if not (inline and self.is_sqlite):
                yield conn
                return
            driver: _OneTripConnection = _pooled(conn).driver_connection
            driver.inline = True
            try:
                yield conn
                # Ends the read transaction here, without a trip (the check-in's rollback
                # then has nothing to end).
                driver._conn.rollback()
            finally:
                driver.inline = False

    async def dispose(self) -> None:
        await self._release_held()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
        for engine in {self._writer, self._reader, self._keyed, self._keyed_lazy}:
            await engine.dispose()


class _WalCheckpointer:
    """Copies a SQLite database's write-ahead log into the database file every
    :data:`CHECKPOINT_INTERVAL_S`, in a thread and on a connection of its own.

    By default SQLite does that inside the commit that grows the log past 1,000 pages: that
    commit then also copies the pages and syncs the database file, a few milliseconds during
    which the relay's group commit, and every send waiting for it, stands still (a single
    message's p99 latency was nearly half again as high for it, docs/benchmarks.md). A ``PASSIVE``
    checkpoint takes no lock that writers or readers wait for; it copies what no reader still
    needs, and the next write starts the log from its beginning once all of it was copied.
    Commits still checkpoint themselves past :data:`WAL_AUTOCHECKPOINT_PAGES`, should this
    thread fall behind. Started by the database's first write; stopped by ``dispose``.
    """

    def __init__(self, path: str, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self._path = path
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and not self._stopping.is_set():
            self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopping.wait(self._interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    # Tried again next time; meanwhile commits checkpoint past the backstop.
                    log.warning("write-ahead log not checkpointed", error=repr(exc))
        finally:
            conn.close()


PING_AFTER_IDLE_S = 1.0
"""A PostgreSQL connection that waited in the pool longer than this is pinged before use."""


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Check a pooled PostgreSQL connection before it is used, if it has been idle.

    A connection is lost when the server restarts or an idle timeout cuts it; a ping (a round
    trip) finds that out before a transaction fails on it. A connection given back to the
    pool moments ago (the group commit's, between two batches) is not pinged: on a busy
    relay that round trip was a tenth of a transaction's. A statement that fails on a
    connection lost in that moment invalidates it (SQLAlchemy's execution, and
    :func:`_driver_run` for driver statements), so it fails once, never again.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        if idle_since is None:
            return  # a new connection: just made
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool throws this connection away and takes (or makes) another.
            raise sqlalchemy.exc.DisconnectionError() from exc


class _OneTripCursor:
    """A cursor of :class:`_OneTripConnection`: runs its statement, fetches every row and
    closes the SQLite cursor in one trip to the connection's thread.

    aiosqlite's own cursor takes a trip for each of these steps (create, execute, fetch,
    close), and each trip costs the event loop a future and a wake-up; short statements of
    the group commit spent more time on those than in SQLite.
    """

    arraysize = 1

    def __init__(self, connection: _OneTripConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> _OneTripCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._rows = []

    async def execute(self, sql: str, parameters: Any = ()) -> _OneTripCursor:
        return await self._run(sql, parameters, many=False)

    async def executemany(self, sql: str, parameters: Any) -> _OneTripCursor:
        return await self._run(sql, parameters, many=True)

    async def _run(self, sql: str, parameters: Any, *, many: bool) -> _OneTripCursor:
        connection = self._connection
        result: tuple[Any, list[Any], int, int | None]
        if sql.startswith("BEGIN IMMEDIATE") and _begin_at_once(connection._conn, sql):
            # The write lock was free (another process's writer holds it only rarely): taken
            # here without waiting, so without a trip.
            result = (None, [], -1, None)
        elif connection.inline and not sql.startswith("BEGIN IMMEDIATE"):
            # A short read, or a short write transaction that already holds SQLite's write
            # lock: the statement cannot wait for another writer, and runs here, without a
            # trip to the connection's thread.
            result = _run_sqlite(connection._conn, sql, parameters, many)
        else:
            run = functools.partial(_run_sqlite, connection._conn, sql, parameters, many)
            result = await connection._execute(run)  # type: ignore[no-untyped-call]
        self.description, self._rows, self.rowcount, self.lastrowid = result
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []


def _begin_at_once(conn: sqlite3.Connection, sql: str) -> bool:
    """Run ``sql`` (a ``BEGIN IMMEDIATE``) without waiting for the lock: ``False`` if another
    connection holds it, and then it must be run where waiting does not block the event loop."""
    conn.execute("PRAGMA busy_timeout=0")
    try:
        conn.execute(sql)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    return True


def _run_sqlite(
    conn: sqlite3.Connection, sql: str, parameters: Any, many: bool
) -> tuple[Any, list[Any], int, int | None]:
    """In the connection's thread: one statement, start to end."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class _OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection whose cursors take one trip to its thread per statement, or
    none while ``inline`` is set (:meth:`Database.write`'s and :meth:`Database.read`'s
    ``inline``); ``inline_commit`` commits without a trip (no wait for the disk)."""

    inline = False
    inline_commit = False

    async def commit(self) -> None:
        if self.inline_commit:
            self._conn.commit()
        else:
            await super().commit()

    async def rollback(self) -> None:
        # A connection given back to the pool is rolled back, mostly outside any transaction
        # (after a commit, or a read that ended its own): nothing to wait for then.
        if self.inline or not self._conn.in_transaction:
            self._conn.rollback()
        else:
            await super().rollback()

    def cursor(self) -> _OneTripCursor:  # type: ignore[override]
        return _OneTripCursor(self)


async def _connect_sqlite(database: str, **kwargs: Any) -> _OneTripConnection:
    # Not bound to the thread that opened it: inline statements run on the event loop's
    # thread, while nothing else uses the connection (a pool of one, one transaction).
    kwargs["check_same_thread"] = False
    connection = _OneTripConnection(
        functools.partial(sqlite3.connect, database, **kwargs), iter_chunk_size=64
    )
    # As SQLAlchemy's own connect does: the worker thread must not keep the process alive.
    connection._thread.daemon = True
    await connection
    return connection


def _sqlite_synchronous(pooled: Any, level: str) -> None:
    """Set the ``synchronous`` level of the SQLite connection ``pooled`` (the pool's proxy)
    before its transaction begins (SQLite refuses the change inside one). Outside a
    transaction the change takes no lock: no trip to the connection's thread."""
    if pooled.info.get("synchronous") == level:
        return
    driver: _OneTripConnection = pooled.driver_connection
    driver._conn.execute(f"PRAGMA synchronous={level}")
    pooled.info["synchronous"] = level


@asynccontextmanager
async def _transaction(
    engine: AsyncEngine,
    prepare: Callable[[Any], Callable[[], None]] | None = None,
    *,
    ends_at_once: bool = False,
    held: Connection | None = None,
    keep: Callable[[Connection], bool] | None = None,
) -> AsyncIterator[AsyncConnection]:
    """A transaction on a connection of ``engine``, committed when the block ends without an
    exception, in two trips through SQLAlchemy's bridge from asyncio to its synchronous core
    (check-out with ``BEGIN``; ``COMMIT`` with check-in) instead of the four of
    ``AsyncEngine.begin()``: a trip is a greenlet switch and back, and the four took longer
    than a small transaction's statements on SQLite.

    ``prepare(pooled)`` runs on the checked-out connection's pool proxy before ``BEGIN``; what
    it returns runs when the transaction has ended, before the connection goes back.
    ``ends_at_once``: the commit and the check-in wait for nothing (SQLite's inline commit).
    ``held``: a connection already checked out (and not in a transaction) to use instead of
    checking one out; ``keep(connection)``, after a commit, may keep it checked out instead
    of checking it in (it returns whether it did).
    """
    finish: list[Callable[[], None]] = []

    def end(sync: Connection, commit: bool) -> None:
        committed = False
        try:
            if commit:
                sync.commit()
                committed = True
        finally:
            try:
                for step in finish:
                    step()
            finally:
                if not (committed and keep is not None and keep(sync)):
                    sync.close()  # rolls back what was not committed

    def begin() -> Connection:
        sync = held if held is not None else engine.sync_engine.connect()
        try:
            if prepare is not None:
                finish.append(prepare(sync.connection))
            sync.begin()
        except BaseException:
            end(sync, commit=False)
            raise
        return sync

    sync = await greenlet_spawn(begin)
    try:
        yield AsyncConnection(engine, sync)
    except BaseException:
        await _to_completion(greenlet_spawn(end, sync, False))
        raise
    if ends_at_once:
        # Nothing in ``end`` waits, so nothing can cancel it halfway: no shielding task (a
        # task and two turns of the event loop, more than the rest of a small transaction).
        await greenlet_spawn(end, sync, True)
    else:
        await _to_completion(greenlet_spawn(end, sync, True))


@asynccontextmanager
async def _checked_out(
    engine: AsyncEngine, *, ends_at_once: bool = False
) -> AsyncIterator[AsyncConnection]:
    """A connection of ``engine``, as ``AsyncEngine.connect()`` gives one; checked in without
    a shielding task when that waits for nothing (``ends_at_once``, see :func:`_transaction`)."""
    sync = await greenlet_spawn(engine.sync_engine.connect)
    try:
        yield AsyncConnection(engine, sync)
    except BaseException:
        await _to_completion(greenlet_spawn(sync.close))
        raise
    if ends_at_once:
        await greenlet_spawn(sync.close)
    else:
        await _to_completion(greenlet_spawn(sync.close))


async def _to_completion(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to its end even if the caller is cancelled meanwhile: a transaction that
    ends halfway could give a connection back to the pool inside a transaction. The
    cancellation is raised once ``work`` has ended."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


def _pooled(conn: AsyncConnection) -> Any:
    """The pool's proxy of the connection ``conn`` has checked out (``driver_connection``,
    ``dbapi_connection``, ``info``), without the trip through SQLAlchemy's greenlet that
    ``get_raw_connection`` takes."""
    sync = conn.sync_connection
    if sync is None:
        raise RuntimeError("the connection is not open")
    return sync.connection

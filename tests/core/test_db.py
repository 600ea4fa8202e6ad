"""Write transactions: a durable one waits for the disk, one that may be lost in a power
failure does not, and never makes a later one less durable; transactions run on the event
loop's thread (``inline``) behave the same, and a write that must wait for another writer does
not stop the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy.event
import sqlalchemy.exc
from sqlalchemy import (
    BigInteger,
    Column,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import Pool
from support import PG_URL, Backend, drop_schema, new_schema_name

import tresen.core.db
from tresen.core.db import (
    Database,
    DriverStatement,
    Newest,
    driver_insert,
    driver_insert_numbered,
    hold_lock,
)


@pytest.fixture
async def db(backend: Backend) -> AsyncIterator[Database]:
    database = Database(backend.url, schema=backend.schema, sqlite_synchronous="FULL")
    if backend.schema is not None:
        await database.ensure_schema(backend.schema)
    try:
        async with database.write() as conn:
            await conn.exec_driver_sql("CREATE TABLE acks (seq INTEGER PRIMARY KEY)")
        yield database
    finally:
        await database.dispose()


async def waits_for_disk(db: Database, conn: AsyncConnection) -> bool:
    """Whether the transaction on ``conn`` will wait for the disk when it commits."""
    if db.is_sqlite:
        return (await conn.exec_driver_sql("PRAGMA synchronous")).scalar_one() == 2  # FULL
    return (await conn.exec_driver_sql("SHOW synchronous_commit")).scalar_one() == "on"


async def failing_write(db: Database, *, inline: bool = False) -> None:
    async with db.write(durable=False, inline=inline) as conn:
        await conn.exec_driver_sql("INSERT INTO acks (seq) VALUES (99)")
        raise RuntimeError("the batch failed")


async def test_a_write_that_may_be_lost_leaves_the_next_one_durable(db: Database) -> None:
    async with db.write(durable=False) as conn:
        assert not await waits_for_disk(db, conn)
        await conn.exec_driver_sql("INSERT INTO acks (seq) VALUES (1)")
    async with db.write() as conn:
        assert await waits_for_disk(db, conn)
        await conn.exec_driver_sql("INSERT INTO acks (seq) VALUES (2)")
    with pytest.raises(RuntimeError):
        await failing_write(db)
    async with db.write() as conn:
        assert await waits_for_disk(db, conn)
    async with db.read() as conn:
        rows = await conn.exec_driver_sql("SELECT seq FROM acks ORDER BY seq")
        assert [r.seq for r in rows] == [1, 2]


async def test_a_write_waits_for_another_writer_without_stopping_the_event_loop(
    db: Database, backend: Backend
) -> None:
    if not db.is_sqlite:
        pytest.skip("PostgreSQL takes row locks, not SQLite's one write lock")
    path = make_url(backend.url).database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer, say
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO acks (seq) VALUES (10)")

    async def write() -> None:
        async with db.write(inline=True) as conn:
            await conn.exec_driver_sql("INSERT INTO acks (seq) VALUES (11)")

    writing = asyncio.create_task(write())
    ticks = 0
    for _ in range(20):
        await asyncio.sleep(0.01)  # the loop runs while the write waits for the lock
        ticks += 1
    assert ticks == 20
    assert not writing.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(writing, 30)
    async with db.read(inline=True) as conn:
        rows = await conn.exec_driver_sql("SELECT seq FROM acks ORDER BY seq")
        assert [r.seq for r in rows] == [10, 11]


async def test_inline_transactions_commit_and_roll_back_like_the_others(db: Database) -> None:
    async with db.write(inline=True, durable=False) as conn:
        await conn.exec_driver_sql("INSERT INTO acks (seq) VALUES (1)")
    with pytest.raises(RuntimeError):
        await failing_write(db, inline=True)
    async with db.write(inline=True) as conn:
        assert await waits_for_disk(db, conn)
        await conn.exec_driver_sql("INSERT INTO acks (seq) VALUES (3)")
    async with db.read(inline=True) as conn:
        rows = await conn.exec_driver_sql("SELECT seq FROM acks ORDER BY seq")
        assert [r.seq for r in rows] == [1, 3]
    async with db.read() as conn:
        rows = await conn.exec_driver_sql("SELECT seq FROM acks ORDER BY seq")
        assert [r.seq for r in rows] == [1, 3]


async def lose_connections(db: Database) -> None:
    """Cut every connection ``db`` holds in its pool, as a server restart does."""
    async with db.read() as conn:
        pid = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
    killer = Database(PG_URL)
    try:
        async with killer.write() as conn:
            await conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    finally:
        await killer.dispose()


async def count_acks(db: Database) -> int:
    async with db.write(inline=True) as conn:
        rows = await COUNT_ACKS.rows(conn, {})
    return int(rows[0][0])


COUNT_ACKS = DriverStatement(lambda _dialect: text("SELECT count(*) FROM acks"))


async def test_a_connection_lost_while_pooled_is_replaced(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.is_sqlite:
        pytest.skip("an embedded SQLite database has no connection to lose")
    # Idle for longer than the ping threshold: checked before use, and replaced unseen.
    monkeypatch.setattr(tresen.core.db, "PING_AFTER_IDLE_S", 0.0)
    await lose_connections(db)
    assert await count_acks(db) == 0

    # Given back a moment ago, so not checked: the first transaction on it fails, and the
    # connection is replaced for the next one (also for statements run on the driver).
    monkeypatch.setattr(tresen.core.db, "PING_AFTER_IDLE_S", 3600.0)
    await lose_connections(db)
    with pytest.raises((sqlalchemy.exc.DBAPIError, AsyncAdapt_asyncpg_dbapi.Error)):
        await count_acks(db)
    assert await count_acks(db) == 0
    async with db.write() as conn:
        await conn.exec_driver_sql("INSERT INTO acks (seq) VALUES (1)")
    assert await count_acks(db) == 1


async def test_a_burst_of_reads_reuses_the_connections_the_last_one_opened(
    backend: Backend,
) -> None:
    if backend.schema is None:
        pytest.skip("an embedded SQLite database opens no connections to a server")
    db = Database(backend.url, schema=backend.schema)
    burst = 20  # as many as the pool holds
    opened = [0]

    def connected(*_args: object) -> None:
        opened[0] += 1

    sqlalchemy.event.listen(db.engine.sync_engine, "connect", connected)

    async def burst_of_reads() -> None:
        everyone_in = asyncio.Barrier(burst)

        async def read() -> None:
            async with db.read() as conn:
                await conn.exec_driver_sql("SELECT 1")
                await everyone_in.wait()  # all of them checked out at once

        await asyncio.gather(*(read() for _ in range(burst)))

    try:
        await burst_of_reads()
        assert opened[0] == burst
        # The connections opened for a burst stay open: the next burst opens none. (Before,
        # those beyond the first ten were closed as they came back and opened again.)
        await burst_of_reads()
        assert opened[0] == burst
    finally:
        await db.dispose()


# --- SQLite's write-ahead log is checkpointed in the background ---------------------------------

ROW = b"\x00" * 1000
ROWS = 6000
"""About 6 MB: past the 1,000 pages (4 MB) at which a commit checkpoints by default."""


async def fill(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(
            text("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, b BLOB)")
        )
    for _ in range(ROWS // 500):
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO blobs (b) VALUES (:b)"), [{"b": ROW}] * 500)


async def test_commits_leave_the_write_ahead_log_to_the_background(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    db = Database(f"sqlite+aiosqlite:///{path}", checkpoint_interval_s=3600)
    try:
        await fill(db)
        # Everything is in the log; no commit stopped to copy it into the database file.
        assert (tmp_path / "relay.db-wal").stat().st_size > ROWS * len(ROW)
        assert path.stat().st_size < ROWS * len(ROW) / 10
    finally:
        await db.dispose()


async def test_the_background_copies_the_write_ahead_log_into_the_database(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relay.db"
    db = Database(f"sqlite+aiosqlite:///{path}", checkpoint_interval_s=0.05)
    try:
        await fill(db)
        deadline = asyncio.get_running_loop().time() + 10
        while path.stat().st_size < ROWS * len(ROW):
            assert asyncio.get_running_loop().time() < deadline, "the log was not copied"
            await asyncio.sleep(0.02)
        async with db.read() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM blobs"))).scalar_one()
        assert count == ROWS
    finally:
        await db.dispose()


# --- a connection held between the group commit's batches ---------------------------------------


def count_checkouts(db: Database) -> list[int]:
    checkouts = [0]

    def checked_out(*_args: object) -> None:
        checkouts[0] += 1

    sqlalchemy.event.listen(db.engine.sync_engine, "checkout", checked_out)
    return checkouts


async def ack(db: Database, seq: int, *, hold: bool, inline: bool = True) -> None:
    async with db.write(durable=False, inline=inline, hold=hold) as conn:
        await conn.exec_driver_sql(f"INSERT INTO acks (seq) VALUES ({seq})")


async def test_back_to_back_batches_keep_their_connection(db: Database) -> None:
    checkouts = count_checkouts(db)
    for seq in range(1, 6):
        await ack(db, seq, hold=True)
    assert checkouts == [1]
    # A write of another kind takes the pool's connection back first.
    await ack(db, 6, hold=False, inline=False)
    await ack(db, 7, hold=True)
    assert checkouts == [3]
    assert await count_acks(db) == 7


async def test_other_writes_never_wait_for_a_held_connection(db: Database) -> None:
    """SQLite's writer pool has one connection: kept for the batches while another write
    waited for it, that write would wait forever."""
    await ack(db, 1, hold=True)

    async def batches(first: int) -> None:
        for seq in range(first, first + 20):
            # Not inline: the batch's statements wait, so the others' writes come meanwhile.
            await ack(db, seq, hold=True, inline=False)

    async def others(first: int) -> None:
        for seq in range(first, first + 20):
            await ack(db, seq, hold=False, inline=False)

    async with asyncio.timeout(30):
        await asyncio.gather(batches(100), batches(200), others(300), others(400))
    assert await count_acks(db) == 81


async def test_keyed_batches_of_both_kinds_keep_their_connections(db: Database) -> None:
    """Batches that wait for the disk and acks that need not alternate at one pair: each
    kind keeps a connection of its own, set up for it."""
    if db.is_sqlite:
        pytest.skip("SQLite has one writer connection for every kind of write")
    checkouts: list[object] = []

    def checked_out(_dbapi: object, record: object, _proxy: object) -> None:
        checkouts.append(record)

    sqlalchemy.event.listen(Pool, "checkout", checked_out)
    try:
        for seq in range(1, 11):
            durable = seq % 2 == 0
            async with db.write(keyed=True, durable=durable, hold=True) as conn:
                assert await waits_for_disk(db, conn) == durable
                await conn.exec_driver_sql(f"INSERT INTO acks (seq) VALUES ({seq})")
    finally:
        sqlalchemy.event.remove(Pool, "checkout", checked_out)
    assert len(checkouts) == 2
    assert await count_acks(db) == 10


async def test_a_connection_held_too_long_is_checked_out_anew(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkouts = count_checkouts(db)
    await ack(db, 1, hold=True)
    monkeypatch.setattr(tresen.core.db, "PING_AFTER_IDLE_S", 0.0)
    await ack(db, 2, hold=True)
    assert checkouts == [2]


async def test_a_failed_batch_does_not_keep_its_connection(db: Database) -> None:
    checkouts = count_checkouts(db)
    await ack(db, 1, hold=True)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        await ack(db, 1, hold=True)  # the same seq again
    await ack(db, 2, hold=True)
    assert checkouts == [2]
    assert await count_acks(db) == 2


async def test_a_keyed_write_finds_rows_by_index_in_a_young_table(db: Database) -> None:
    """The group commit's statements are prepared once per connection and PostgreSQL keeps
    the plan it made after a few runs: made while the table was nearly empty, it scanned the
    whole table ever after. In a keyed write the planner takes the index whatever the size."""
    if db.is_sqlite:
        pytest.skip("SQLite plans every statement anew")
    # A batch's keys against a table of some twenty pages (PostgreSQL plans by the size the
    # table has at the time): reading the table costs less than a hundred index look-ups.
    look_up = "EXPLAIN SELECT seq FROM acks WHERE seq IN (SELECT generate_series(1, 100))"
    async with db.write() as conn:
        await conn.exec_driver_sql("INSERT INTO acks (seq) SELECT generate_series(1, 4000)")
        plain = "\n".join(row[0] for row in await conn.exec_driver_sql(look_up))
    async with db.write(keyed=True) as conn:
        keyed = "\n".join(row[0] for row in await conn.exec_driver_sql(look_up))
        assert await waits_for_disk(db, conn)
    assert "Seq Scan on acks" in plain
    assert "Seq Scan" not in keyed
    assert "Index" in keyed
    async with db.write(keyed=True, durable=False) as conn:
        assert not await waits_for_disk(db, conn)
    # Other writes plan as usual, even one that would take a connection a keyed write kept.
    async with db.write(keyed=True, hold=True):
        pass
    async with db.write(hold=True) as conn:
        assert await waits_for_disk(db, conn)
        assert (await conn.exec_driver_sql("SHOW enable_seqscan")).scalar_one() == "on"
        assert (await conn.exec_driver_sql("SHOW jit")).scalar_one() == "on"


async def test_a_keyed_write_plans_each_statement_once(db: Database) -> None:
    """Left to choose, PostgreSQL plans a statement with an array of keys anew on every run
    (the array makes its one generic plan look dearer); at one pair that planning was more
    than half of its work per message. Keyed writes plan a prepared statement once."""
    if db.is_sqlite:
        pytest.skip("SQLite prepares and plans in the relay's own process")
    look_up = DriverStatement(lambda _: text("SELECT seq FROM acks WHERE seq = ANY(:keys)"))
    plans = text(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
        " WHERE statement LIKE 'SELECT seq FROM acks WHERE seq = ANY%'"
    )
    found: dict[bool, tuple[int, int]] = {}
    for keyed in (False, True):
        async with db.write(keyed=keyed) as conn:
            for first in range(0, 40, 10):
                rows = await look_up.rows(conn, {"keys": list(range(first, first + 10))})
                assert rows == []
            generic, custom = (await conn.execute(plans)).one()
            found[keyed] = (generic, custom)
    assert found[False] == (0, 4)
    assert found[True] == (4, 0)


async def test_driver_insert_stores_every_row_and_value(db: Database) -> None:
    table = Table(
        "stored",
        MetaData(),
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("name", String(16), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("small", SmallInteger, nullable=False),
        Column("maybe", BigInteger, nullable=True),
    )
    async with db.write() as conn:
        await conn.run_sync(table.metadata.create_all)
    columns = ("seq", "name", "body", "small", "maybe")
    rows = [
        (seq, f"n{seq}", bytes([seq % 256]) * seq, seq % 7, None if seq % 3 else -seq)
        for seq in range(1, 301)
    ]
    async with db.write(keyed=True) as conn:
        await driver_insert(conn, table, columns, rows[:1])
        await driver_insert(conn, table, columns, [])
        await driver_insert(conn, table, columns, rows[1:])
    async with db.read() as conn:
        stored = await conn.execute(select(table).order_by(table.c.seq))
        assert [tuple(row) for row in stored] == rows
    # All or nothing, like any statement: a row the table refuses leaves the others out.
    with pytest.raises((sqlite3.IntegrityError, AsyncAdapt_asyncpg_dbapi.IntegrityError)):
        async with db.write() as conn:
            await driver_insert(conn, table, columns, [(1000, "new", b"", 0, None), rows[0]])
    async with db.read() as conn:
        count = await conn.execute(select(func.count()).select_from(table))
        assert count.scalar_one() == len(rows)


async def test_numbered_rows_take_their_numbers_in_the_order_given(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite numbers rows by AUTOINCREMENT (the mailbox does so itself)")
    table = Table(
        "numbered",
        MetaData(),
        Column("n", BigInteger, primary_key=True, autoincrement=True),
        Column("name", String(16), nullable=False),
        Column("maybe", LargeBinary, nullable=True),
    )
    async with db.write() as conn:
        await conn.run_sync(table.metadata.create_all)
    # Names that sort neither like their order nor like their numbers.
    rows = [(f"{(i * 37) % 101:03d}", None if i % 4 else bytes([i])) for i in range(1, 201)]
    async with db.write(keyed=True) as conn:
        first = [
            number
            for (number,) in await driver_insert_numbered(
                conn, table, "n", ("name", "maybe"), rows[:150]
            )
        ]
        assert await driver_insert_numbered(conn, table, "n", ("name", "maybe"), []) == []
    # Rows of another table can go in the same statement.
    other = Table("other", table.metadata, Column("name", String(16), primary_key=True))
    async with db.write() as conn:
        await conn.run_sync(other.create)
    async with db.write(keyed=True) as conn:
        # With values the inserted rows hold, returned in the order of the rows given.
        returned = await driver_insert_numbered(
            conn,
            table,
            "n",
            ("name", "maybe"),
            rows[150:],
            also=(other, ("name",), [("x",)]),
            returning=("name", "length(name || 'ab')"),
        )
        assert [(name, size) for _, name, size in returned] == [(name, 5) for name, _ in rows[150:]]
        second = [number for number, _, _ in returned]
    numbers = first + second
    assert numbers == sorted(set(numbers))
    async with db.read() as conn:
        stored = await conn.execute(select(table).order_by(table.c.n))
        assert [tuple(row) for row in stored] == [
            (n, *row) for n, row in zip(numbers, rows, strict=True)
        ]
        assert [tuple(row) for row in await conn.execute(select(other))] == [("x",)]


async def test_a_held_lock_keeps_out_its_own_schema_and_no_other(db: Database) -> None:
    """Advisory locks are the whole database's: a relay in another schema of the same
    database takes the same key at once, one in the same schema waits for the holder."""
    if db.is_sqlite:
        pytest.skip("SQLite has a single writer and takes no named locks")
    other_schema = new_schema_name()
    other = Database(PG_URL, schema=other_schema)
    await other.ensure_schema(other_schema)
    try:
        async with db.write() as holder:
            await hold_lock(holder, "kt_log")
            async with other.write() as conn:
                await asyncio.wait_for(hold_lock(conn, "kt_log"), 30)

            started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            async def same_schema() -> None:
                async with db.write() as conn:
                    pid = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
                    started.set_result(pid)
                    await hold_lock(conn, "kt_log")

            waiting = asyncio.create_task(same_schema())
            pid = await asyncio.wait_for(started, 30)
            # Until PostgreSQL shows that transaction waiting for an advisory lock.
            watcher = Database(PG_URL)
            try:
                for _ in range(3000):
                    async with watcher.read() as conn:
                        waits = (
                            await conn.exec_driver_sql(
                                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                f" AND NOT granted AND pid = {int(pid)}"
                            )
                        ).scalar_one()
                    if waits or waiting.done():
                        break
                    await asyncio.sleep(0.01)
            finally:
                await watcher.dispose()
            assert not waiting.done()
        await asyncio.wait_for(waiting, 30)  # the holder committed: it goes on
    finally:
        await other.dispose()
        await drop_schema(other_schema)


async def test_numbered_rows_need_a_floor_for_every_group(db: Database) -> None:
    """A row whose group had no floor would be inserted and not returned: refused first."""
    if db.is_sqlite:
        pytest.skip("SQLite numbers rows by AUTOINCREMENT (the mailbox does so itself)")
    table = Table(
        "grouped",
        MetaData(),
        Column("n", BigInteger, primary_key=True, autoincrement=True),
        Column("g", BigInteger, nullable=False),
    )
    async with db.write() as conn:
        await conn.run_sync(table.metadata.create_all)
    async with db.write(keyed=True) as conn:
        first = await driver_insert_numbered(
            conn, table, "n", ("g",), [(1,), (2,)], newest=Newest("g", {1: 0, 2: 0})
        )
        with pytest.raises(ValueError, match="a floor for every g"):
            await driver_insert_numbered(
                conn, table, "n", ("g",), [(1,), (3,)], newest=Newest("g", {1: 0})
            )
        # Group 1 held its first row above floor 0; group 2 nothing above its own floor.
        later = await driver_insert_numbered(
            conn, table, "n", ("g",), [(1,), (2,)], newest=Newest("g", {1: 0, 2: first[1][0]})
        )
    assert [n for _, n in first] == [0, 0]
    assert [n for _, n in later] == [first[0][0], first[1][0]]
    async with db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(table))).scalar_one() == 4

"""Write transactions: a durable one waits for the disk, one that may be lost in a power
failure does not, and never makes a later one less durable."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection
from support import Backend

from tresen.core.db import Database


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


async def failing_write(db: Database) -> None:
    async with db.write(durable=False) as conn:
        await conn.exec_driver_sql("INSERT INTO acks (seq) VALUES (3)")
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

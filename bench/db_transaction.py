"""What one small write transaction costs the event loop: ``Database.write`` against
SQLAlchemy's own ``AsyncEngine.begin()``, one after the other in the same run.

Each transaction runs one statement (``SELECT 1`` on the driver, as the group commit runs its
statements) and commits; ``inline`` on SQLite, as the group commit's batches are. ``durable``
waits for the disk (SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``);
non-durable is the group commit's ack-only batch. ``cpu`` is the process's CPU time per
transaction (all threads, user and system); on PostgreSQL its server's CPU is not in it.

    .venv/bin/python bench/db_transaction.py --transactions 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

sys.path.insert(0, str(Path(__file__).parent))
from relay_throughput import PG_URL

from tresen.core.db import Database, DriverStatement

ONE = DriverStatement(lambda _dialect: text("SELECT 1"))

Transaction = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


async def timed(begin: Transaction, count: int) -> tuple[float, float]:
    """Wall and CPU microseconds per transaction."""
    for _ in range(count // 10):  # warm: pool, prepared statements
        async with begin() as conn:
            await ONE.rows(conn, {})
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        async with begin() as conn:
            await ONE.rows(conn, {})
    return (
        (time.perf_counter() - wall) / count * 1e6,
        (time.process_time() - cpu) / count * 1e6,
    )


def sqlalchemy_begin(db: Database, *, durable: bool) -> Transaction:
    """``AsyncEngine.begin()`` with what ``Database.write`` adds on top: the durability
    switch (SQLite) or setting (PostgreSQL), and the inline flags (SQLite)."""

    @asynccontextmanager
    async def begin() -> AsyncIterator[AsyncConnection]:
        engine = db.engine
        if not db.is_sqlite:
            async with engine.begin() as conn:
                if not durable:
                    await conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield conn
            return
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            level = "FULL" if durable else "NORMAL"
            if raw.info.get("synchronous") != level:
                await driver.cursor().execute(f"PRAGMA synchronous={level}")
                raw.info["synchronous"] = level
            driver.inline_commit = not durable
            try:
                async with conn.begin():
                    driver.inline = True
                    try:
                        yield conn
                    finally:
                        driver.inline = False
            finally:
                driver.inline_commit = False

    return begin


async def measure(backend: str, count: int) -> list[dict[str, object]]:
    folder = tempfile.mkdtemp()
    schema = f"bench_{secrets.token_hex(4)}" if backend == "postgres" else None
    url = PG_URL if backend == "postgres" else f"sqlite+aiosqlite:///{folder}/bench.db"
    db = Database(url, schema=schema, sqlite_synchronous="FULL")
    rows: list[dict[str, object]] = []
    try:
        if schema:
            await db.ensure_schema(schema)
        for durable in (False, True):
            ours = lambda durable=durable: db.write(durable=durable, inline=True)  # noqa: E731
            theirs = sqlalchemy_begin(db, durable=durable)
            # Alternating halves, so that drift on a shared machine hits both alike.
            results: dict[str, list[tuple[float, float]]] = {"write": [], "begin": []}
            for _ in range(2):
                results["begin"].append(await timed(theirs, count // 2))
                results["write"].append(await timed(ours, count // 2))
            row: dict[str, object] = {"backend": backend, "durable": durable}
            for name, runs in results.items():
                row[f"{name}_wall_us"] = round(sum(w for w, _ in runs) / len(runs), 1)
                row[f"{name}_cpu_us"] = round(sum(c for _, c in runs) / len(runs), 1)
            row["cpu_ratio"] = round(float(row["write_cpu_us"]) / float(row["begin_cpu_us"]), 2)
            rows.append(row)
    finally:
        if schema:
            async with db.write() as conn:
                await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await db.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=3000, help="per configuration")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", type=Path, default=Path("bench/results/db_transaction.json"))
    args = parser.parse_args()
    rows = []
    for backend in args.backends.split(","):
        rows += asyncio.run(measure(backend, args.transactions))
    print(
        f"{'backend':<10}{'durable':<9}{'begin() wall':>13}{'cpu':>8}"
        f"{'write() wall':>13}{'cpu':>8}{'cpu write/begin':>17}"
    )
    for row in rows:
        print(
            f"{row['backend']:<10}{row['durable']!s:<9}{row['begin_wall_us']:>13}"
            f"{row['begin_cpu_us']:>8}{row['write_wall_us']:>13}{row['write_cpu_us']:>8}"
            f"{row['cpu_ratio']:>17}"
        )
    print("µs per transaction; begin() = AsyncEngine.begin(), write() = Database.write")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"machine": os.uname().nodename, "cpus": os.cpu_count()}
    args.out.write_text(json.dumps(machine | {"results": rows}, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

"""Bursts of reads on a PostgreSQL pool: connections opened, and what opening them costs.

A relay node's reads come in bursts (its devices reconnecting at once, a commit waking many
connections that then read their mailboxes). This runs ``--bursts`` bursts of ``--burst``
concurrent reads (each checks out a connection, runs ``SELECT 1`` and holds it until the whole
burst has one) through ``tresen.core.db.Database``, whose pool opens connections as it needs
them and keeps them, and, in the same run, through a pool of the same most connections where
half of them are overflow (closed as they come back; how the pools were made before). It
prints connections opened, wall time per burst, and the CPU of this process and of the
PostgreSQL server (every ``postgres`` process on the machine) per burst, and writes JSON.

    .venv/bin/python bench/pg_pool.py --bursts 50 --burst 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy.event
from relay_throughput import PG_URL, postgres_cpu_seconds
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tresen.core.db import Database


def overflowing(size: int, schema: str) -> AsyncEngine:
    """A pool of ``size`` connections at most, half of them overflow."""
    return create_async_engine(
        PG_URL,
        pool_size=size // 2,
        max_overflow=size - size // 2,
        connect_args={"server_settings": {"search_path": schema}},
    )


async def bursts(
    checkout: Callable[[], object], count: int, burst: int
) -> tuple[float, float, float]:
    """Wall, own CPU and PostgreSQL's CPU seconds for ``count`` bursts."""

    async def one_burst() -> None:
        everyone_in = asyncio.Barrier(burst)

        async def read() -> None:
            async with checkout() as conn:  # type: ignore[attr-defined]
                await conn.execute(text("SELECT 1"))
                await everyone_in.wait()

        await asyncio.gather(*(read() for _ in range(burst)))

    started, cpu, db_cpu = time.perf_counter(), time.process_time(), postgres_cpu_seconds()
    for _ in range(count):
        await one_burst()
    return (
        time.perf_counter() - started,
        time.process_time() - cpu,
        postgres_cpu_seconds() - db_cpu,
    )


async def run(count: int, burst: int) -> list[dict[str, object]]:
    schema = f"bench_{secrets.token_hex(4)}"
    db = Database(PG_URL, schema=schema, pool_size=burst)
    await db.ensure_schema(schema)
    old = overflowing(burst, schema)
    rows = []
    try:
        for name, engine, checkout in (
            ("kept (Database)", db.engine, db.read),
            ("half overflow", old, old.connect),
        ):
            opened = [0]

            def connected(*_args: object, opened: list[int] = opened) -> None:
                opened[0] += 1

            sqlalchemy.event.listen(engine.sync_engine, "connect", connected)
            wall, cpu, db_cpu = await bursts(checkout, count, burst)
            rows.append(
                {
                    "pool": name,
                    "bursts": count,
                    "burst": burst,
                    "connections_opened": opened[0],
                    "ms_per_burst": round(wall / count * 1000, 2),
                    "own_cpu_ms_per_burst": round(cpu / count * 1000, 2),
                    "postgres_cpu_ms_per_burst": round(db_cpu / count * 1000, 2),
                }
            )
    finally:
        await old.dispose()
        async with db.write() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await db.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=50)
    parser.add_argument("--burst", type=int, default=20, help="concurrent reads (pool size)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/pg_pool.json"))
    args = parser.parse_args()
    rows = asyncio.run(run(args.bursts, args.burst))
    print(f"{'pool':<18}{'opened':>8}{'ms/burst':>10}{'own cpu ms':>12}{'pg cpu ms':>11}")
    for r in rows:
        print(
            f"{r['pool']:<18}{r['connections_opened']:>8}{r['ms_per_burst']:>10}"
            f"{r['own_cpu_ms_per_burst']:>12}{r['postgres_cpu_ms_per_burst']:>11}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    args.out.write_text(json.dumps({"machine": machine, "runs": rows}, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

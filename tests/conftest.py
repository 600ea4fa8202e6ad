from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import pytest_timeout
from support import (
    PG_URL,
    SCHEMAS,
    SQLITE_TEMPLATES,
    Backend,
    MakeRelay,
    RelayProcess,
    RunningRelay,
    S3Server,
    drop_schema,
    new_schema_name,
    postgres_reachable,
    serve_relay,
)

REQUIRE_POSTGRES = os.environ.get("TRESEN_REQUIRE_POSTGRES") == "1"

SERVES_RELAY = frozenset({"relay", "make_relay", "relay_process"})

_dump_thread_stacks = pytest_timeout.dump_stacks


def _dump_tasks_and_thread_stacks(terminal: Any) -> None:
    """On a test's timeout, print what each asyncio task of the running loop waits for
    before the threads' stacks (which show only an event loop waiting in ``select``)."""
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:
        tasks = set()
    for task in tasks:
        terminal.sep("~", f"asyncio task {task.get_name()}")
        stack = io.StringIO()
        task.print_stack(file=stack)
        terminal.write(stack.getvalue())
    _dump_thread_stacks(terminal)


pytest_timeout.dump_stacks = _dump_tasks_and_thread_stacks


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    asyncio.run(SCHEMAS.drop_all())
    SQLITE_TEMPLATES.remove_all()


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """An empty database, once on SQLite and once on PostgreSQL."""
    # A test that serves a relay gets a database the relay's migrations made already, empty.
    pooled = not SERVES_RELAY.isdisjoint(request.fixturenames)
    if request.param == "sqlite":
        if pooled:
            SQLITE_TEMPLATES.copy_to("relay", tmp_path / "relay.db")
        yield Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
        return
    if not postgres_reachable():
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required (TRESEN_REQUIRE_POSTGRES=1)")
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    schema = SCHEMAS.take("relay") if pooled else new_schema_name()
    try:
        yield Backend("postgres", PG_URL, schema)
    finally:
        if pooled:
            await SCHEMAS.give_back("relay", schema)
        else:
            await drop_schema(schema)


@pytest.fixture
async def relay(backend: Backend, tmp_path: Path) -> AsyncIterator[RunningRelay]:
    async with serve_relay(backend, tmp_path) as running:
        yield running


@pytest.fixture
def make_relay(backend: Backend, tmp_path: Path) -> MakeRelay:
    """``async with make_relay(clock=..., limits={...}) as relay``: a relay with overrides."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[RunningRelay]:
        return serve_relay(backend, tmp_path, **overrides)

    return factory


@pytest.fixture
def relay_process(backend: Backend, tmp_path: Path) -> Iterator[RelayProcess]:
    """A relay in a child process (``python -m tresen relay serve``); call ``start()``."""
    process = RelayProcess(backend, tmp_path / "relay")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3-compatible server (moto's) for the whole session; each test makes its bucket."""
    server = S3Server(tmp_path_factory.mktemp("s3") / "s3.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()

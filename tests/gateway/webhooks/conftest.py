"""Fixtures of the webhook tests: a migrated gateway database on both backends, a manual
clock, an outbox, a recording receiver and dispatchers that post to it."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from support import Backend

from tresen.core.clock import ManualClock
from tresen.core.db import Database
from tresen.core.http import tls_context
from tresen.gateway import migrate
from tresen.gateway.settings import WebhookSettings
from tresen.gateway.webhooks import Outbox, WebhookDispatcher

# The tests here import their helpers from webhook_support.py next to this file.
sys.path.insert(0, str(Path(__file__).parent))

from webhook_support import Receiver, echo_handshake


@pytest.fixture
async def db(backend: Backend) -> AsyncIterator[Database]:
    database = backend.database()
    await migrate.upgrade(database)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def webhook_settings() -> WebhookSettings:
    return WebhookSettings(
        retry_initial_s=1,
        retry_factor=2,
        retry_max_s=60,
        give_up_s=3600,
        timeout_s=5,
        concurrency=8,
        batch=100,
        poll_s=5,
    )


@pytest.fixture
def outbox(
    db: Database, key: bytes, clock: ManualClock, webhook_settings: WebhookSettings
) -> Outbox:
    return Outbox(db, key, clock, webhook_settings)


@pytest.fixture
def receiver(clock: ManualClock) -> Receiver:
    return Receiver(clock)


@pytest.fixture
async def handshake_http() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose every URL answers the handshake for ``VERIFY_TOKEN``."""
    async with httpx.AsyncClient(
        verify=tls_context(), transport=httpx.MockTransport(echo_handshake)
    ) as http:
        yield http


MakeDispatcher = Callable[..., WebhookDispatcher]


@pytest.fixture
async def make_dispatcher(outbox: Outbox, receiver: Receiver) -> AsyncIterator[MakeDispatcher]:
    """``make_dispatcher()``: a started dispatcher posting to ``receiver`` (closed after)."""
    started: list[WebhookDispatcher] = []

    def factory(**overrides: Any) -> WebhookDispatcher:
        overrides.setdefault("transport", receiver.transport)
        dispatcher = WebhookDispatcher(outbox, **overrides)
        dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield factory
    for dispatcher in started:
        await dispatcher.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put structlog's configuration back afterwards (the CLI configures it)."""
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


@pytest.fixture
def info_logs(restore_logging: None) -> None:
    """Log lines from info level up reach ``capture_logs``, whatever ran before."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from browser_support import chromium, require_chromium
from playwright.async_api import Browser
from webapp_support import (
    AppPage,
    MakeCustomer,
    Platform,
    open_app,
    require_webapp,
    run_platform,
    sdk_customer,
)

from tresen.client import Client


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """``tresen up`` in a child process, shared by the session's tests (each test registers
    numbers of its own: ``platform.next_phone()``)."""
    with run_platform(tmp_path_factory.mktemp("platform")) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (Debian's), closed after the test."""
    async with chromium() as running:
        yield running


@pytest.fixture
async def app(browser: Browser, platform: Platform) -> AsyncIterator[AppPage]:
    """The web app at ``/app/`` in a fresh browser context at phone size; its problems are
    recorded in ``app.problems``."""
    require_chromium()
    require_webapp()
    page = await open_app(browser, platform)
    try:
        yield page
    finally:
        await page.close()


@pytest.fixture
async def make_customer(platform: Platform, tmp_path: Path) -> AsyncIterator[MakeCustomer]:
    """``await make_customer("anna")``: a registered, started SDK customer on the platform's
    relay, in its own folder; closed after the test."""
    clients: list[Client] = []

    async def make(name: str = "customer", phone: str | None = None, **options: object) -> Client:
        client = await sdk_customer(platform, tmp_path / name, phone, **options)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from browser_support import (
    PASSWORD,
    Clocked,
    Team,
    TwoAgents,
    chromium,
    require_chromium,
    signed_in_page,
)
from gateway_support import RunningGateway, serve_gateway
from playwright.async_api import Browser
from support import Backend, MakeRelay, RunningRelay

from tresen.core.clock import ManualClock, SystemClock
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents, Role

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(params=["sqlite"])
def backend(tmp_path: Path) -> Backend:
    """SQLite only: the browser tests are about what people see; the stores' behaviour on
    both databases is tested under tests/gateway/."""
    return Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")


@pytest.fixture
async def gw(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    """A verified business whose device is a gateway serving the inbox."""
    require_chromium()  # before the relay and gateway start, when there is no browser
    async with serve_gateway(relay, backend, tmp_path, display_name="Bäckerei Sonne") as running:
        await running.gateway.business_profile()  # the pages' header shows its name at once
        yield running


@asynccontextmanager
async def made_team(gw: RunningGateway) -> AsyncIterator[Team]:
    """Anna Schmidt (admin) and Ben Meyer (agent) in the gateway's inbox."""
    db = await open_database(gw.settings)
    try:
        agents = Agents(db, SystemClock(), hasher=FAST)
        await agents.create("anna", "Anna Schmidt", Role.ADMIN, PASSWORD)
        await agents.create("ben", "Ben Meyer", Role.AGENT, PASSWORD)
        yield Team(agents)
    finally:
        await db.dispose()


@pytest.fixture
async def team(gw: RunningGateway) -> AsyncIterator[Team]:
    async with made_team(gw) as made:
        yield made


@pytest.fixture
async def clocked(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path
) -> AsyncIterator[Clocked]:
    require_chromium()
    # Starts at the real time: the customer's client signs its opt-in with its own clock.
    clock = ManualClock(SystemClock().now_ms())
    async with (
        make_relay(clock=clock) as relay,
        serve_gateway(relay, backend, tmp_path, display_name="Bäckerei Sonne", clock=clock) as gw,
        made_team(gw) as team,
    ):
        await gw.gateway.business_profile()
        yield Clocked(clock, relay, gw, team)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


@pytest.fixture
async def signed_in(browser: Browser, gw: RunningGateway, team: Team) -> TwoAgents:
    return TwoAgents(
        anna=await signed_in_page(browser, gw.url, team.admin),
        ben=await signed_in_page(browser, gw.url, team.agent),
    )

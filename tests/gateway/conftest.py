from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gateway_support import RunningGateway, gateway_database, serve_gateway
from support import SCHEMAS, Backend, RunningRelay

from tresen.core.db import Database
from tresen.gateway.database import open_database
from tresen.gateway.settings import GatewaySettings


@pytest.fixture
async def gw(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    """A verified business whose device is a gateway, with an API token."""
    async with serve_gateway(relay, backend, tmp_path) as running:
        yield running


@pytest.fixture
async def db(backend: Backend, tmp_path: Path) -> AsyncIterator[Database]:
    """A gateway's database, migrated, without a gateway."""
    database, schema = gateway_database(backend, tmp_path)
    opened = await open_database(GatewaySettings(data_dir=tmp_path / "gw", **database))
    try:
        yield opened
    finally:
        await opened.dispose()
        if schema is not None:
            await SCHEMAS.give_back("gateway", schema)

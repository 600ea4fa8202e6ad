from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gateway_support import RunningGateway, serve_gateway
from support import Backend, RunningRelay


@pytest.fixture
async def gw(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    """A verified business whose device is a gateway, with an API token."""
    async with serve_gateway(relay, backend, tmp_path) as running:
        yield running

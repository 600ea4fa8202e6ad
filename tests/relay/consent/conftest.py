"""Fixtures of the consent tests: a relay on a manual clock (see ``factories.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from relay.consent.factories import NOW, World
from support import MakeRelay

from tresen.core.clock import ManualClock


@pytest.fixture
async def world(make_relay: MakeRelay) -> AsyncIterator[World]:
    clock = ManualClock(NOW)
    async with make_relay(clock=clock) as relay:
        yield World(relay, clock)

"""Fixtures of the billing tests: a relay on a manual clock (see ``factories.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from relay.billing.factories import JAN_2026, LIMITS, UNLIMITED, Billing
from support import MakeRelay

from tresen.core.clock import ManualClock

BillingFactory = Callable[..., AbstractAsyncContextManager[Billing]]


@pytest.fixture
def make_billing(make_relay: MakeRelay) -> BillingFactory:
    """``async with make_billing(**policy) as b``: a relay with these policy settings."""

    @asynccontextmanager
    async def factory(start_ms: int = JAN_2026, **policy: Any) -> AsyncIterator[Billing]:
        clock = ManualClock(start_ms)
        async with make_relay(clock=clock, policy=UNLIMITED | policy, limits=LIMITS) as relay:
            token = await relay.ctx.operator.create_token("billing", by="test")
            yield Billing(relay, clock, {"Authorization": f"Bearer {token}"})

    return factory


@pytest.fixture
async def billing(make_billing: BillingFactory) -> AsyncIterator[Billing]:
    async with make_billing() as b:
        yield b

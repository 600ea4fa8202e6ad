"""Factories for business tests: a registered business, and the operator's decisions, which
these tests write straight into the database (the operator side has its own tests)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select, update
from support import Device, RunningRelay

from tresen.relay.schema import accounts, business_profiles, verification_requests

MakeBusiness = Callable[..., Awaitable[Device]]
SetProfile = Callable[..., Awaitable[None]]
Requests = Callable[[RunningRelay, Device], Awaitable[list[dict[str, Any]]]]


@pytest.fixture
def make_business() -> MakeBusiness:
    """``await make_business(relay, "Name", about=...)``: a new account with a saved profile."""

    async def factory(
        relay: RunningRelay, display_name: str | None = None, **fields: Any
    ) -> Device:
        device = await relay.register()
        body = {"display_name": display_name or f"Business {secrets.token_hex(3)}", **fields}
        r = await relay.http.put("/v1/business/profile", json=body, headers=device.auth)
        assert r.status_code == 201, r.text
        return device

    return factory


@pytest.fixture
def set_profile() -> SetProfile:
    """``await set_profile(relay, device, verification="verified", suspended_ms=1)``."""

    async def setter(relay: RunningRelay, device: Device, **columns: Any) -> None:
        async with relay.ctx.db.write() as conn:
            await conn.execute(
                update(business_profiles)
                .where(business_profiles.c.account_id == device.account_id)
                .values(**columns)
            )

    return setter


@pytest.fixture
def requests_of() -> Requests:
    """Every verification request of a business, oldest first."""

    async def read(relay: RunningRelay, device: Device) -> list[dict[str, Any]]:
        async with relay.ctx.db.read() as conn:
            rows = await conn.execute(
                select(verification_requests)
                .where(verification_requests.c.account_id == device.account_id)
                .order_by(verification_requests.c.id)
            )
            return [dict(row._mapping) for row in rows]

    return read


async def account_kind(relay: RunningRelay, device: Device) -> str:
    async with relay.ctx.db.read() as conn:
        value = (
            await conn.execute(select(accounts.c.kind).where(accounts.c.id == device.account_id))
        ).scalar_one()
        return str(value)


@pytest.fixture
def kind_of() -> Callable[[RunningRelay, Device], Awaitable[str]]:
    return account_kind

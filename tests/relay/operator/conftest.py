"""Factories for the operator tests: operator tokens, businesses, and a client's key ring.

Business profiles and verification requests are written straight into the database: the
profile routes belong to the business directory, which these tests do not depend on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, update
from support import Device, RunningRelay, publish_identity

from tresen.core.ids import AccountId
from tresen.crypto.certificates import (
    KeyRing,
    PublishedKey,
    SignedCertificate,
    SignedRevocationList,
)
from tresen.relay.businesses.names import name_skeleton
from tresen.relay.schema import accounts, business_profiles, verification_requests


@dataclass
class Business:
    account_id: str
    phone: str
    display_name: str
    devices: list[Device]
    olm_accounts: list[Any] = field(default_factory=list)

    @property
    def device_keys(self) -> list[str]:
        return sorted(a.ed25519_key.to_base64() for a in self.olm_accounts)


async def add_profile(
    relay: RunningRelay, account_id: str, display_name: str, *, pending: bool = True
) -> None:
    now = relay.ctx.clock.now_ms()
    async with relay.ctx.db.write() as conn:
        await conn.execute(
            update(accounts).where(accounts.c.id == account_id).values(kind="business")
        )
        await conn.execute(
            insert(business_profiles).values(
                account_id=account_id,
                display_name=display_name,
                name_skeleton=name_skeleton(display_name),
                verification="pending" if pending else "unverified",
                created_ms=now,
                updated_ms=now,
            )
        )
    if pending:
        await add_request(relay, account_id)


async def add_request(relay: RunningRelay, account_id: str, note: str = "please verify") -> None:
    now = relay.ctx.clock.now_ms()
    async with relay.ctx.db.write() as conn:
        await conn.execute(
            insert(verification_requests).values(
                account_id=account_id, state="pending", note=note, requested_ms=now
            )
        )
        await conn.execute(
            update(business_profiles)
            .where(business_profiles.c.account_id == account_id)
            .values(verification="pending")
        )


class OperatorHarness:
    """What the operator tests need around one relay (tests get it as the ``op`` fixture;
    helpers live here because test modules cannot import a conftest)."""

    def __init__(self, relay: RunningRelay) -> None:
        self.relay = relay
        self.http = relay.http

    async def business(
        self, display_name: str = "Bäckerei Müller", *, devices: int = 1, pending: bool = True
    ) -> Business:
        """A registered account with identity keys on every device, a business profile and
        (``pending``) a pending verification request."""
        first = await self.relay.register(device_name="counter")
        business = Business(first.account_id, first.phone, display_name, [first])
        for _ in range(devices - 1):
            business.devices.append(await self.relay.register(first.phone, device_name="office"))
        for device in business.devices:
            business.olm_accounts.append(await publish_identity(self.relay, device))
        await add_profile(self.relay, first.account_id, display_name, pending=pending)
        return business

    async def profile(self, account_id: str, display_name: str, *, pending: bool = True) -> None:
        await add_profile(self.relay, account_id, display_name, pending=pending)

    async def add_request(self, account_id: str, note: str = "please verify") -> None:
        await add_request(self.relay, account_id, note)

    async def headers(self, name: str = "alice") -> dict[str, str]:
        """Authorization headers with a new operator token named ``name``."""
        token = await self.relay.ctx.operator.create_token(name, by="test")
        return {"Authorization": f"Bearer {token}"}

    async def published(self) -> tuple[str, list[PublishedKey]]:
        """The current public key and every published key."""
        r = await self.http.get("/v1/operator/keys")
        assert r.status_code == 200, r.text
        body = r.json()
        keys = [PublishedKey.from_json(k) for k in body["keys"]]
        [current] = [k for k in keys if k.key_id == body["current_key_id"]]
        return current.public_key, keys

    async def ring(self) -> KeyRing:
        """A client's key ring, pinned to the relay's current key as published now."""
        current, keys = await self.published()
        ring = KeyRing(current)
        ring.update(keys)
        return ring

    async def certificate(self, account_id: str) -> SignedCertificate:
        r = await self.http.get(f"/v1/certificates/{account_id}")
        assert r.status_code == 200, r.text
        return SignedCertificate.from_json(r.json())

    async def revocations(self) -> SignedRevocationList:
        r = await self.http.get("/v1/certificates/revoked")
        assert r.status_code == 200, r.text
        return SignedRevocationList.from_json(r.json())

    async def admin(
        self, method: str, path: str, headers: dict[str, str], **kwargs: Any
    ) -> httpx.Response:
        return await self.http.request(method, "/v1/admin" + path, headers=headers, **kwargs)

    async def audit_actions(self, account_id: str) -> list[tuple[str, str]]:
        """(operator, action) of the account's audit rows, oldest first."""
        entries = await self.relay.ctx.operator.audit(AccountId(account_id), 1000)
        return [(e.operator, e.action) for e in reversed(entries)]


@pytest.fixture
def op(relay: RunningRelay) -> OperatorHarness:
    return OperatorHarness(relay)


@pytest.fixture
async def ops(op: OperatorHarness) -> dict[str, str]:
    """Headers with an operator token named ``alice``."""
    return await op.headers()


@pytest.fixture
def error_of() -> Callable[[httpx.Response], dict[str, Any]]:
    def of(r: httpx.Response) -> dict[str, Any]:
        error: dict[str, Any] = r.json()["error"]
        return error

    return of


@pytest.fixture
def harness_of() -> Callable[[RunningRelay], OperatorHarness]:
    """``harness_of(relay)`` for relays made with ``make_relay`` (a clock, other settings)."""
    return OperatorHarness

"""Consent test helpers: businesses with profiles, and customers whose devices hold real
identity keys and sign statements."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from support import Device, RunningRelay

from tresen.core.clock import ManualClock
from tresen.crypto.consent import (
    ConsentScope,
    ConsentState,
    SignedConsent,
    new_statement,
    sign_statement,
)
from tresen.crypto.olm import DeviceIdentity

NOW = 1_767_225_600_000
MINUTE = 60_000


@dataclass
class Customer:
    """A registered device with identity keys it can sign with."""

    device: Device
    identity: DeviceIdentity

    @property
    def account_id(self) -> str:
        return self.device.account_id

    @property
    def auth(self) -> dict[str, str]:
        return self.device.auth

    def sign(
        self,
        business: str | Device,
        scope: str = "marketing",
        state: str = "opted_in",
        *,
        at_ms: int,
        **fields: Any,
    ) -> SignedConsent:
        values: dict[str, Any] = {
            "business_account": business if isinstance(business, str) else business.account_id,
            "customer_account": self.device.account_id,
            "customer_phone": self.device.phone,
            "scope": ConsentScope(scope),
            "state": ConsentState(state),
            "at_ms": at_ms,
            "device_id": self.device.device_id,
            "device_ed25519": self.identity.ed25519,
        }
        values.update(fields)
        return sign_statement(self.identity, new_statement(**values))


@dataclass
class World:
    relay: RunningRelay
    clock: ManualClock

    @property
    def http(self) -> httpx.AsyncClient:
        return self.relay.http

    async def business(self, display_name: str | None = None) -> Device:
        device = await self.relay.register()
        body = {"display_name": display_name or f"Business {secrets.token_hex(3)}"}
        r = await self.http.put("/v1/business/profile", json=body, headers=device.auth)
        assert r.status_code == 201, r.text
        return device

    async def customer(self, phone: str | None = None) -> Customer:
        device = await self.relay.register(phone)
        identity = DeviceIdentity.create()
        await self.publish(device, identity)
        return Customer(device, identity)

    async def publish(self, device: Device, identity: DeviceIdentity) -> None:
        r = await self.http.put(
            "/v1/keys",
            headers=device.auth,
            json={
                "identity_keys": {"curve25519": identity.curve25519, "ed25519": identity.ed25519}
            },
        )
        assert r.status_code == 200, r.text

    async def submit(self, customer: Customer, *signed: SignedConsent) -> httpx.Response:
        return await self.http.post(
            "/v1/consents",
            json={"statements": [s.to_json() for s in signed]},
            headers=customer.auth,
        )

    async def opt(
        self,
        customer: Customer,
        business: Device,
        scope: str = "marketing",
        state: str = "opted_in",
    ) -> dict[str, Any]:
        """Sign and submit one statement dated now; it must be accepted."""
        r = await self.submit(customer, customer.sign(business, scope, state, at_ms=self.now))
        assert r.status_code == 200, r.text
        consent: dict[str, Any] = r.json()["consents"][0]
        return consent

    async def pair(
        self, business: Device, customer: Customer, reader: dict[str, str]
    ) -> httpx.Response:
        return await self.http.get(
            f"/v1/consents/{business.account_id}/{customer.account_id}", headers=reader
        )

    async def dashboard(self, customer: Customer) -> list[dict[str, Any]]:
        r = await self.http.get("/v1/consents", headers=customer.auth)
        assert r.status_code == 200, r.text
        lines: list[dict[str, Any]] = r.json()["businesses"]
        return lines

    @property
    def now(self) -> int:
        return self.clock.now_ms()


def error_of(r: httpx.Response) -> tuple[int, int, dict[str, Any]]:
    """HTTP status, error code and details of a rejection."""
    error = r.json()["error"]
    return r.status_code, int(error["code"]), dict(error["details"])

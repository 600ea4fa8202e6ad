"""Billing test helpers: a relay on a manual clock with an operator token, businesses and
customers with phone numbers in chosen countries, templates and consents written straight to
their tables, sends and deliveries over HTTP.

Consent and templates are written straight into their tables: these tests are about what is
priced and charged, not about how opt-ins and templates come to be.
"""

from __future__ import annotations

import base64
import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import insert, select
from support import Device, RunningRelay, publish_identity, receiving_device

from tresen.core.clock import ManualClock
from tresen.relay.schema import consents, ledger, templates

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
JAN_2026 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FEB_2026 = 1_769_904_000_000  # 2026-02-01T00:00:00Z

# Numbers that are valid for the relay and placed in the country by the send path.
_PHONES = {
    "DE": ("+49152{:08d}", 10**8),
    "FR": ("+3361{:07d}", 10**7),
    "GB": ("+44780{:07d}", 10**7),
    "US": ("+1212{:07d}", 10**7),
    "BR": ("+55119{:08d}", 10**8),
}
_serial = itertools.count(secrets.randbelow(10**6) * 100)
_ids = itertools.count(1)

# Policy settings that keep throughput and pair limits out of the way of billing tests.
UNLIMITED = {"business_throughput_mps": 1_000, "pair_burst": 100_000}
# Envelopes outlive the weeks a test's clock may move.
LIMITS = {
    "send_burst_per_device": 100_000,
    "send_rate_per_device": 100_000.0,
    "envelope_ttl_s": 365 * 24 * 3600,
}


def phone_in(country: str) -> str:
    pattern, size = _PHONES[country]
    number = next(_serial) % size
    if country == "US":
        number = 2_000_000 + number % 8_000_000  # exchanges start at 2
    return pattern.format(number)


@dataclass
class Billing:
    relay: RunningRelay
    clock: ManualClock
    operator: dict[str, str]
    envelopes: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    @property
    def http(self) -> httpx.AsyncClient:
        return self.relay.http

    async def business(self, name: str = "Bäckerei Müller", country: str = "DE") -> Device:
        device = await receiving_device(self.relay, phone_in(country))
        r = await self.http.put(
            "/v1/business/profile", json={"display_name": name}, headers=device.auth
        )
        assert r.status_code == 201, r.text
        return device

    async def customer(self, country: str = "DE") -> Device:
        return await receiving_device(self.relay, phone_in(country))

    async def second_device(self, customer: Device) -> Device:
        """Another device of the customer's account (same phone number)."""
        device = await self.relay.register(customer.phone)
        assert device.account_id == customer.account_id
        await publish_identity(self.relay, device)
        return device

    async def template(self, business: Device, category: str) -> int:
        now = self.clock.now_ms()
        async with self.relay.ctx.db.write() as conn:
            result = await conn.execute(
                insert(templates).values(
                    business_account=business.account_id,
                    name=f"t{next(_ids)}",
                    language="en_US",
                    category=category,
                    components="[]",
                    status="APPROVED",
                    created_ms=now,
                    updated_ms=now,
                )
            )
            return int(result.inserted_primary_key[0])

    async def consent(self, business: Device, customer: Device, scope: str) -> None:
        async with self.relay.ctx.db.write() as conn:
            await conn.execute(
                insert(consents).values(
                    business_account=business.account_id,
                    customer_account=customer.account_id,
                    scope=scope,
                    state="opted_in",
                    source="customer",
                    updated_ms=self.clock.now_ms(),
                )
            )

    async def send(
        self,
        sender: Device,
        to: Device,
        klass: str = "session",
        template: int | None = None,
        *,
        devices: list[Device] | None = None,
        client_msg_id: str | None = None,
    ) -> dict[str, Any]:
        """Send one opaque message to every device of ``to``; the relay's answer or its
        error object."""
        body: dict[str, Any] = {
            "client_msg_id": client_msg_id or f"m{next(_ids)}",
            "to": to.account_id,
            "class": klass,
            "per_device": [
                {
                    "device_id": d.device_id,
                    "type": 1,
                    "body": base64.b64encode(b"\x01" * 40).decode(),
                }
                for d in devices or [to]
            ],
        }
        if template is not None:
            body["template_ref"] = str(template)
        r = await self.http.post("/v1/messages", json=body, headers=sender.auth)
        answer: dict[str, Any] = r.json()
        answer = answer.get("error", answer)
        answer["client_msg_id"] = body["client_msg_id"]
        return answer

    async def pending(self, device: Device) -> list[dict[str, Any]]:
        r = await self.http.get("/v1/messages", params={"limit": 500}, headers=device.auth)
        assert r.status_code == 200, r.text
        envelopes: list[dict[str, Any]] = r.json()["envelopes"]
        return envelopes

    async def ack(self, device: Device, ids: list[int]) -> int:
        r = await self.http.post("/v1/messages/ack", json={"ids": ids}, headers=device.auth)
        assert r.status_code == 200, r.text
        return int(r.json()["deleted"])

    async def deliver(self, device: Device) -> list[str]:
        """The device fetches and acks everything pending: the message ids it got."""
        envelopes = [e for e in await self.pending(device) if e["kind"] == "message"]
        await self.ack(device, [e["id"] for e in envelopes])
        return [e["message_id"] for e in envelopes]

    async def ledger(self) -> dict[str, tuple[str, int, str, int]]:
        """message id → (business, price micros, currency, charged ms) of every charge."""
        async with self.relay.ctx.db.read() as conn:
            rows = await conn.execute(
                select(
                    ledger.c.message_id,
                    ledger.c.business_account,
                    ledger.c.price_micros,
                    ledger.c.currency,
                    ledger.c.charged_ms,
                )
            )
            return {r[0]: (r[1], int(r[2]), r[3], int(r[4])) for r in rows.all()}

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, path, headers=self.operator, **kwargs)

    async def override(self, business: Device, *rates: tuple[str, str, int], **body: Any) -> None:
        r = await self.admin(
            "PUT",
            f"/v1/admin/businesses/{business.account_id}/rate-card",
            json={
                "rates": [{"category": c, "country": k, "price_micros": p} for c, k, p in rates],
                **body,
            },
        )
        assert r.status_code == 200, r.text

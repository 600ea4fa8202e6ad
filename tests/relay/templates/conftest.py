"""Factories for the template tests: businesses with a saved profile, templates in the Cloud
API shape, operator tokens, and a client's operator key ring."""

from __future__ import annotations

import copy
import secrets
from typing import Any

import httpx
import pytest
from support import Device, RunningRelay

from tresen.crypto.certificates import KeyRing, PublishedKey

ORDER_SHIPPED: dict[str, Any] = {
    "name": "order_shipped",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "HEADER",
            "format": "TEXT",
            "text": "Order {{1}}",
            "example": {"header_text": ["#4711"]},
        },
        {
            "type": "BODY",
            "text": "Hi {{1}}, your order ships on {{2}}.",
            "example": {"body_text": [["Anna", "Monday"]]},
        },
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Track"},
                {
                    "type": "URL",
                    "text": "View order",
                    "url": "https://shop.example/o/{{1}}",
                    "example": ["4711"],
                },
                {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+4930123456"},
            ],
        },
    ],
}


def order_shipped(**changes: Any) -> dict[str, Any]:
    """A valid utility template; ``changes`` replace top-level fields."""
    template = copy.deepcopy(ORDER_SHIPPED)
    template.update(changes)
    return template


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


class Templates:
    """What the template tests need around one relay (the ``tpl`` fixture)."""

    def __init__(self, relay: RunningRelay) -> None:
        self.relay = relay
        self.http = relay.http
        self._operator: dict[str, str] | None = None

    async def business(self, display_name: str | None = None) -> Device:
        """A registered account with a saved business profile."""
        device = await self.relay.register()
        name = display_name or f"Laden {secrets.token_hex(3)}"
        r = await self.http.put(
            "/v1/business/profile", json={"display_name": name}, headers=device.auth
        )
        assert r.status_code == 201, r.text
        return device

    async def operator(self) -> dict[str, str]:
        if self._operator is None:
            token = await self.relay.ctx.operator.create_token(
                f"ops-{secrets.token_hex(3)}", by="test"
            )
            self._operator = {"Authorization": f"Bearer {token}"}
        return self._operator

    async def submit(self, device: Device, template: dict[str, Any] | None = None) -> str:
        r = await self.http.post(
            "/v1/business/message_templates",
            json=template or order_shipped(),
            headers=device.auth,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    async def approve(self, template_id: str) -> dict[str, Any]:
        r = await self.http.post(
            f"/v1/admin/templates/{template_id}/approve", headers=await self.operator()
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def approved(self, device: Device, template: dict[str, Any] | None = None) -> str:
        template_id = await self.submit(device, template)
        await self.approve(template_id)
        return template_id

    async def own(self, device: Device, template_id: str) -> dict[str, Any]:
        r = await self.http.get(
            f"/v1/business/message_templates/{template_id}", headers=device.auth
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def signed(self, device: Device, template_id: str) -> httpx.Response:
        return await self.http.get(f"/v1/templates/{template_id}", headers=device.auth)

    async def ring(self) -> KeyRing:
        """A client's key ring, pinned to the relay's current operator key."""
        r = await self.http.get("/v1/operator/keys")
        assert r.status_code == 200, r.text
        body = r.json()
        keys = [PublishedKey.from_json(k) for k in body["keys"]]
        [current] = [k for k in keys if k.key_id == body["current_key_id"]]
        ring = KeyRing(current.public_key)
        ring.update(keys)
        return ring

    async def audit_actions(self, account_id: str) -> list[tuple[str, str]]:
        from tresen.core.ids import AccountId

        entries = await self.relay.ctx.operator.audit(AccountId(account_id), 1000)
        return [(e.operator, e.action) for e in reversed(entries)]


@pytest.fixture
def tpl(relay: RunningRelay) -> Templates:
    return Templates(relay)


@pytest.fixture
def templates_of() -> type[Templates]:
    """``templates_of(relay)`` for relays made with ``make_relay`` (a clock, settings)."""
    return Templates


@pytest.fixture
def make_template() -> Any:
    """``make_template(**changes)``: a valid utility template with top-level changes."""
    return order_shipped

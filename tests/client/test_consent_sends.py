"""What consent does to a business's template sends, end to end through real clients: no
marketing without the customer's signed opt-in, STOP ends it and START brings it back, and
revoking everything ends utility messages too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import RunningRelay, read_last_code

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.core.errors import ErrorCode

SALE: dict[str, Any] = {
    "name": "spring_sale",
    "language": "en_US",
    "category": "MARKETING",
    "components": [
        {
            "type": "BODY",
            "text": "Hi {{1}}, 20 % off all flights this week.",
            "example": {"body_text": [["Anna"]]},
        }
    ],
}
BOARDING: dict[str, Any] = {
    "name": "boarding_soon",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "BODY",
            "text": "Flight {{1}} boards at gate {{2}}.",
            "example": {"body_text": [["TA 123", "B4"]]},
        }
    ],
}


@dataclass
class World:
    relay: RunningRelay
    tmp_path: Path
    operator: dict[str, str]
    clients: list[Client] = field(default_factory=list)

    async def client(self, name: str) -> Client:
        phone = self.relay.next_phone()
        client = Client.open(self.tmp_path / name, self.relay.url)
        self.clients.append(client)
        await client.request_code(phone)
        code = read_last_code(self.relay.sms_file, phone)
        assert code is not None
        await client.register(phone, code, device_name=name)
        return client

    async def approved(self, business: Client, template: dict[str, Any]) -> str:
        created = await business.api.submit_template(template)
        r = await self.relay.http.post(
            f"/v1/admin/templates/{created['id']}/approve", headers=self.operator
        )
        assert r.status_code == 200, r.text
        return str(created["id"])


@pytest.fixture
async def world(relay: RunningRelay, tmp_path: Path) -> AsyncIterator[World]:
    token = await relay.ctx.operator.create_token("ops", by="test")
    world = World(relay, tmp_path, {"Authorization": f"Bearer {token}"})
    yield world
    for client in world.clients:
        await client.close()


async def refused_code(send: Any) -> int | None:
    """The relay's code if the send is refused, else ``None``."""
    try:
        await send
    except RelayError as exc:
        return exc.code
    return None


async def test_stop_and_start_decide_whether_marketing_gets_through(world: World) -> None:
    airline = await world.client("airline")
    await airline.save_business_profile(display_name="Tresen Air")
    sale = await world.approved(airline, SALE)
    anna = await world.client("anna")
    assert anna.account_id is not None
    assert airline.account_id is not None

    def offer() -> Any:
        assert anna.account_id is not None
        return airline.send_template(anna.account_id, sale, "en_US", {"body": ["Anna"]})

    # Nobody asked Anna: no marketing.
    assert await refused_code(offer()) == ErrorCode.MARKETING_STOPPED
    await anna.opt_in(airline.account_id, scopes=["marketing"])
    assert await refused_code(offer()) is None

    sent = await anna.send_text(airline.account_id, "STOP")
    assert sent.consent is not None
    assert sent.consent.confirmation.startswith("You will no longer receive marketing messages")
    assert await refused_code(offer()) == ErrorCode.MARKETING_STOPPED

    await anna.send_text(airline.account_id, "Start")
    assert await refused_code(offer()) is None


async def test_revoking_everything_ends_utility_messages_too(world: World) -> None:
    airline = await world.client("airline")
    await airline.save_business_profile(display_name="Tresen Air")
    boarding = await world.approved(airline, BOARDING)
    anna = await world.client("anna")
    assert anna.account_id is not None
    assert airline.account_id is not None
    await anna.opt_in(airline.account_id)

    def notice() -> Any:
        assert anna.account_id is not None
        return airline.send_template(anna.account_id, boarding, "en_US", {"body": ["TA 123", "B4"]})

    # STOP leaves the boarding notices alone ...
    await anna.send_text(airline.account_id, "stop")
    assert await refused_code(notice()) is None
    # ... the dashboard's one action ends them.
    await anna.revoke_all(airline.account_id)
    assert await refused_code(notice()) == ErrorCode.MARKETING_STOPPED
    [line] = await anna.consents()
    assert (line.display_name, line.opted_in_scopes) == ("Tresen Air", ())

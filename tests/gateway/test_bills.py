"""Verifiable bills: customers' devices sign a delivery receipt for every template message they
accept, the gateway keeps the receipts, and `tresen gateway billing verify` (and the inbox's
bills report) hold the operator's statement against them: an honest month verifies clean, a
charge for a message the customer never received is named."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from gateway_support import RunningGateway, approved_template, customer, next_of
from inbox_browser import FAST, PASSWORD, Browser
from sqlalchemy import func, insert, select
from support import RunningRelay, registered_client
from typer.testing import CliRunner

from tresen.cli.main import app as cli
from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.clock import SystemClock
from tresen.crypto.delivery import DeliveryFacts, sign_delivery
from tresen.gateway.database import open_database
from tresen.gateway.ids import decode_wamid
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.inbox.tokens import AgentTokens
from tresen.gateway.schema import delivery_receipts
from tresen.relay.schema import ledger, message_pricing
from tresen.wire import relay as wire
from tresen.wire.e2e import DeliveryReceipt, encode_payload


def shipped(to: str, order: str) -> dict[str, Any]:
    return {
        "to": to,
        "type": "template",
        "template": {
            "name": "order_shipped",
            "language": {"code": "en_US"},
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": f"#{order}"}]},
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Kim"},
                        {"type": "text", "text": "Monday"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": order}],
                },
            ],
        },
    }


class Shop:
    """A business gateway with an owner who has a token, and its customers."""

    def __init__(self, relay: RunningRelay, gw: RunningGateway, token: str) -> None:
        self.relay, self.gw, self.token = relay, gw, token
        self.sent: list[str] = []

    async def send_template(self, to: Client, order: str) -> str:
        r = await self.gw.send(shipped(str(to.phone), order))
        assert r.status_code == 200, r.text
        message_id = decode_wamid(r.json()["messages"][0]["id"])
        self.sent.append(message_id)
        return message_id

    async def receipts(self) -> dict[str, tuple[str, int, bytes]]:
        db = await open_database(self.gw.settings)
        try:
            async with db.read() as conn:
                rows = (await conn.execute(select(delivery_receipts))).all()
        finally:
            await db.dispose()
        return {
            r.message_id: (r.customer_account, int(r.device_id), bytes(r.signature)) for r in rows
        }

    async def wait_for_receipts(self, wanted: set[str]) -> dict[str, tuple[str, int, bytes]]:
        for _ in range(600):
            kept = await self.receipts()
            if wanted <= kept.keys():
                return kept
            await asyncio.sleep(0.05)
        raise AssertionError(f"receipts missing for {wanted - kept.keys()}")

    def month(self) -> str:
        now = self.relay.ctx.clock.now_ms()
        return datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m")

    async def verify(self, *extra: str) -> tuple[int, str]:
        """``tresen gateway billing verify`` against the running gateway."""
        args = ["gateway", "billing", "verify", "--month", self.month()]
        args += ["--url", self.gw.url, "--token", self.token, *extra]
        result = await asyncio.to_thread(CliRunner().invoke, cli, args, catch_exceptions=False)
        return result.exit_code, result.output


@pytest.fixture
async def shop(relay: RunningRelay, gw: RunningGateway) -> Shop:
    await approved_template(relay, gw)
    db = await open_database(gw.settings)
    try:
        agents = Agents(db, SystemClock(), hasher=FAST)
        owner = await agents.create("anna", "Anna", Role.OWNER, PASSWORD)
        await agents.create("cem", "Cem", Role.AGENT, PASSWORD)
        _listed, token = await AgentTokens(db, SystemClock(), agents).create(owner.id, "bills")
    finally:
        await db.dispose()
    return Shop(relay, gw, token)


async def forge_charge(relay: RunningRelay, business: str, recipient: str, template: int) -> str:
    """A line a dishonest operator adds to the ledger: a message nobody received."""
    message_id = secrets.token_hex(16)
    async with relay.ctx.db.write() as conn:
        await conn.execute(
            insert(ledger).values(
                business_account=business,
                message_id=message_id,
                recipient_account=recipient,
                template_id=template,
                category="utility",
                country="DE",
                price_micros=12_500,
                currency="EUR",
                charged_ms=relay.ctx.clock.now_ms(),
            )
        )
    return message_id


async def charged(relay: RunningRelay, business: str, expected: int) -> list[str]:
    """The messages charged to ``business``, once there are ``expected`` (or after 30 s).

    A charge is written when the recipient's device acks the message; its receipt to the
    business is a message of its own, which can be stored first."""
    for _ in range(600):
        async with relay.ctx.db.read() as conn:
            rows = await conn.execute(
                select(ledger.c.message_id).where(ledger.c.business_account == business)
            )
            found = [str(r[0]) for r in rows]
        if len(found) >= expected:
            break
        await asyncio.sleep(0.05)
    return found


async def test_an_honest_month_verifies_clean_and_a_forged_charge_is_named(
    relay: RunningRelay, gw: RunningGateway, shop: Shop, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    bob = await customer(relay, tmp_path / "bob")
    # Bob reads on two devices: both accept the message, one receipt is kept.
    bob_tablet: Client = await registered_client(
        relay.url, relay.sms_file, tmp_path / "bob-tablet", str(bob.phone)
    )
    bob_tablet.start()
    browser = Browser(gw.url)
    try:
        for person in (alice, bob):
            await person.opt_in(gw.gateway.phone)
        to_alice = [await shop.send_template(alice, str(n)) for n in (1, 2, 3)]
        to_bob = [await shop.send_template(bob, str(n)) for n in (4, 5)]
        for person, count in ((alice, 3), (bob, 2), (bob_tablet, 2)):
            for _ in range(count):
                event = await next_of(person, MessageEvent)
                assert event.template is not None
        kept = await shop.wait_for_receipts(set(to_alice + to_bob))
        assert {m: kept[m][0] for m in to_alice + to_bob} == {
            **dict.fromkeys(to_alice, alice.account_id),
            **dict.fromkeys(to_bob, bob.account_id),
        }
        charges = await charged(relay, gw.gateway.account_id, len(to_alice + to_bob))
        assert sorted(charges) == sorted(to_alice + to_bob)

        code, output = await shop.verify()
        assert code == 0, output
        assert "every charge is proven by a delivery receipt" in output
        await browser.sign_in("anna")
        page = await browser.get(f"/inbox/reports/bills?month={shop.month()}")
        assert page.status_code == 200
        assert "every charge is proven by a delivery receipt" in page.text
        assert "<code>" not in page.text  # no charge is listed as unproven

        # A receipt opens no service window: the shop still may not write freely.
        r = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "Hi!"}})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == 131047

        # The operator charges a message Alice never received.
        template_id = await shop_template_id(relay, gw)
        forged = await forge_charge(relay, gw.gateway.account_id, alice.account_id, template_id)
        code, output = await shop.verify()
        assert code == 1, output
        assert "1 charges are not proven" in output
        assert forged in output
        assert all(m not in output for m in to_alice + to_bob)
        code, as_json = await shop.verify("--json")
        assert code == 1
        assert '"reason": "no_receipt"' in as_json
        assert as_json.count('"message_id"') == 1
        page = await browser.get(f"/inbox/reports/bills?month={shop.month()}")
        assert f"<code>{forged}</code>" in page.text
        assert "1 charges are not proven by a delivery receipt" in page.text

        # Only owners and admins see the bills.
        agent = Browser(gw.url)
        try:
            await agent.sign_in("cem")
            assert (await agent.get("/inbox/reports/bills")).status_code == 403
        finally:
            await agent.close()
    finally:
        await browser.close()
        for client in (alice, bob, bob_tablet):
            await client.close()


async def shop_template_id(relay: RunningRelay, gw: RunningGateway) -> int:
    """The template the shop's messages were accepted as (their pricing facts are stored
    with them)."""
    async with relay.ctx.db.read() as conn:
        row = (
            await conn.execute(
                select(func.max(message_pricing.c.template_id)).where(
                    message_pricing.c.business_account == gw.gateway.account_id
                )
            )
        ).one()
    return int(row[0])


async def test_receipts_with_a_bad_signature_or_for_a_message_not_ours_are_not_counted(
    relay: RunningRelay, gw: RunningGateway, shop: Shop, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        await alice.opt_in(gw.gateway.phone)
        real = await shop.send_template(alice, "7")
        event = await next_of(alice, MessageEvent)
        assert event.template is not None
        genuine = (await shop.wait_for_receipts({real}))[real]
        template = await shop_template_id(relay, gw)
        forged = await forge_charge(relay, gw.gateway.account_id, alice.account_id, template)
        identity = alice.device.require_identity()

        def facts(message_id: str, delivered_ms: int) -> DeliveryFacts:
            return DeliveryFacts(
                message_id=message_id,
                business=gw.gateway.account_id,
                customer=str(alice.account_id),
                device_id=int(alice.device_id or 0),
                template_id=str(template),
                delivered_ms=delivered_ms,
            )

        now = relay.ctx.clock.now_ms()
        receipts = [
            # Signed over another time than it claims.
            DeliveryReceipt(
                message_id=real,
                template_id=str(template),
                delivered_ms=now,
                signature=sign_delivery(identity, facts(real, now - 1)),
            ),
            # Well signed, but for a message the shop never sent (the forged charge's).
            DeliveryReceipt(
                message_id=forged,
                template_id=str(template),
                delivered_ms=now,
                signature=sign_delivery(identity, facts(forged, now)),
            ),
        ]
        for n, receipt in enumerate(receipts):
            await alice.sender.deliver(
                gw.gateway.account_id,
                encode_payload(receipt),
                f"forged-{n}",
                wire.MessageClass.RECEIPT,
            )
        dropped = gw.gateway.client.delivery.dropped
        for _ in range(600):
            if dropped["bad_signature"] and dropped["not_our_message"]:
                break
            await asyncio.sleep(0.05)
        assert dict(dropped) == {"bad_signature": 1, "not_our_message": 1}
        kept = await shop.receipts()
        assert kept == {real: genuine}

        code, output = await shop.verify()
        assert code == 1, output
        assert forged in output
        assert real not in output
    finally:
        await alice.close()


async def test_a_message_that_came_while_offline_gets_its_receipt_when_the_customer_returns(
    relay: RunningRelay, gw: RunningGateway, shop: Shop, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    await alice.opt_in(gw.gateway.phone)
    await alice.close()
    waiting = await shop.send_template(alice, "9")
    assert waiting not in await shop.receipts()
    back = Client.open(tmp_path / "alice")
    try:
        back.start()
        event = await next_of(back, MessageEvent)
        assert (event.message_id, event.template is not None) == (waiting, True)
        kept = await shop.wait_for_receipts({waiting})
        assert kept[waiting][:2] == (back.account_id, back.device_id)
        code, output = await shop.verify()
        assert code == 0, output
    finally:
        await back.close()

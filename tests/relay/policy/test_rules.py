"""The platform rules as a business and its customers meet them, with an injected clock.

Consent and templates are written straight into their tables here: these tests are about
what the send path decides, not about how opt-ins and templates come to be.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from support import Device, RunningRelay, receiving_device

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.relay.schema import consents, ledger, templates

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_ids = itertools.count(1)


@dataclass
class Rules:
    relay: RunningRelay
    clock: ManualClock

    async def business(self, name: str = "Corner Shop", phone: str | None = None) -> Device:
        device = await receiving_device(self.relay, phone)
        r = await self.relay.http.put(
            "/v1/business/profile", json={"display_name": name}, headers=device.auth
        )
        assert r.status_code == 201, r.text
        return device

    async def customer(self, phone: str | None = None) -> Device:
        return await receiving_device(self.relay, phone)

    async def send(
        self,
        sender: Device,
        to: Device,
        klass: str = "session",
        template: int | None = None,
        client_msg_id: str | None = None,
    ) -> dict[str, Any]:
        """Send one (opaque) message; the relay's answer or its error object."""
        body: dict[str, Any] = {
            "client_msg_id": client_msg_id or f"m{next(_ids)}",
            "to": to.account_id,
            "class": klass,
            "per_device": [
                {
                    "device_id": to.device_id,
                    "type": 1,
                    "body": base64.b64encode(b"\x01" * 40).decode(),
                }
            ],
        }
        if template is not None:
            body["template_ref"] = str(template)
        r = await self.relay.http.post("/v1/messages", json=body, headers=sender.auth)
        answer: dict[str, Any] = r.json()
        return answer.get("error", answer)

    async def deliver(self, device: Device) -> None:
        """The device fetches and acks everything waiting for it."""
        r = await self.relay.http.get("/v1/messages", headers=device.auth)
        ids = [e["id"] for e in r.json()["envelopes"]]
        r = await self.relay.http.post("/v1/messages/ack", json={"ids": ids}, headers=device.auth)
        assert r.status_code == 200, r.text

    async def template(self, business: Device, category: str, status: str = "APPROVED") -> int:
        now = self.clock.now_ms()
        async with self.relay.ctx.db.write() as conn:
            result = await conn.execute(
                insert(templates).values(
                    business_account=business.account_id,
                    name=f"t{next(_ids)}",
                    language="en_US",
                    category=category,
                    components="[]",
                    status=status,
                    paused_until_ms=now + 3 * HOUR_MS if status == "PAUSED" else None,
                    created_ms=now,
                    updated_ms=now,
                )
            )
            return int(result.inserted_primary_key[0])

    async def consent(
        self, business: Device, customer: Device, scope: str, state: str, source: str
    ) -> None:
        async with self.relay.ctx.db.write() as conn:
            await conn.execute(
                insert(consents).values(
                    business_account=business.account_id,
                    customer_account=customer.account_id,
                    scope=scope,
                    state=state,
                    source=source,
                    updated_ms=self.clock.now_ms(),
                )
            )

    async def quality(self, business: Device) -> dict[str, Any]:
        r = await self.relay.http.get("/v1/business/quality", headers=business.auth)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


RulesFactory = Callable[..., AbstractAsyncContextManager[Rules]]


@pytest.fixture
def rules(make_relay: Any) -> RulesFactory:
    @asynccontextmanager
    async def factory(**policy: Any) -> AsyncIterator[Rules]:
        clock = ManualClock()
        async with make_relay(clock=clock, policy=policy) as relay:
            yield Rules(relay, clock)

    return factory


async def test_the_window_closes_exactly_24_hours_after_the_customers_last_message(
    rules: RulesFactory,
) -> None:
    async with rules() as r:
        shop, ana = await r.business(), await r.customer()
        assert (await r.send(shop, ana))["code"] == ErrorCode.REENGAGEMENT
        assert "message_id" in await r.send(ana, shop)
        r.clock.advance(hours=23)
        reply = await r.send(shop, ana)
        assert reply["pricing"] == {
            "billable": False,
            "pricing_model": "PMP",
            "type": "free_customer_service",
            "category": "service",
        }
        # The business's reply did not extend the window.
        r.clock.advance(ms=HOUR_MS - 1)
        assert "message_id" in await r.send(shop, ana)
        r.clock.advance(ms=1)
        closed = await r.send(shop, ana)
        assert closed["code"] == ErrorCode.REENGAGEMENT
        assert "template" in closed["message"]
        # The customer writes again: the window opens again.
        assert "message_id" in await r.send(ana, shop)
        assert "message_id" in await r.send(shop, ana)


async def test_customers_write_freely_and_customer_chats_have_no_window(
    rules: RulesFactory,
) -> None:
    async with rules() as r:
        ana, ben = await r.customer(), await r.customer()
        r.clock.advance(hours=100)
        assert "message_id" in await r.send(ana, ben)
        assert (await r.send(ana, ben, "template", 1))["code"] == ErrorCode.INVALID_PARAMETER


CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
CONSENTS = (
    None,
    ("marketing", "opted_in", "customer"),
    ("utility", "opted_in", "customer"),
    ("utility", "opted_in", "business"),
    ("marketing", "opted_out", "customer"),
    ("utility", "opted_out", "customer"),
)


def expected(category: str, consent: tuple[str, str, str] | None, blocked: bool) -> int | None:
    """The rule table: what a template send outside a window must give."""
    if blocked:
        return ErrorCode.UNDELIVERABLE
    needed = "marketing" if category == "MARKETING" else "utility"
    if consent is None:
        return ErrorCode.MARKETING_STOPPED
    scope, state, source = consent
    if scope != needed or state != "opted_in":
        return ErrorCode.MARKETING_STOPPED
    if needed == "marketing" and source != "customer":
        return ErrorCode.MARKETING_STOPPED
    return None


async def test_consent_block_and_category_matrix(rules: RulesFactory) -> None:
    async with rules() as r:
        shop = await r.business()
        ids = {c: await r.template(shop, c) for c in CATEGORIES}
        cases = list(itertools.product(CATEGORIES, CONSENTS, (False, True)))
        for category, consent, blocked in cases:
            customer = await r.customer()
            if consent is not None:
                await r.consent(shop, customer, *consent)
            if blocked:
                b = await r.relay.http.post(
                    "/v1/blocks", json={"account_id": shop.account_id}, headers=customer.auth
                )
                assert b.status_code == 201, b.text
            answer = await r.send(shop, customer, "template", ids[category])
            want = expected(category, consent, blocked)
            got = answer.get("code")
            assert got == want, (category, consent, blocked, answer)
        assert len(cases) == 36


async def test_attested_consent_counts_only_when_the_operator_accepts_it(
    rules: RulesFactory,
) -> None:
    async with rules(accept_attested_consent=False) as r:
        shop, ana = await r.business(), await r.customer()
        utility = await r.template(shop, "UTILITY")
        await r.consent(shop, ana, "utility", "opted_in", "business")
        assert (await r.send(shop, ana, "template", utility))["code"] == ErrorCode.MARKETING_STOPPED


async def test_templates_must_be_the_senders_own_and_approved(rules: RulesFactory) -> None:
    async with rules() as r:
        shop, other, ana = await r.business(), await r.business("Kiosk"), await r.customer()
        await r.consent(shop, ana, "utility", "opted_in", "customer")
        theirs = await r.template(other, "UTILITY")
        pending = await r.template(shop, "UTILITY", "PENDING")
        paused = await r.template(shop, "UTILITY", "PAUSED")
        disabled = await r.template(shop, "UTILITY", "DISABLED")
        assert (await r.send(shop, ana, "template", theirs))["code"] == ErrorCode.TEMPLATE_NOT_FOUND
        assert (await r.send(shop, ana, "template", 999_999))[
            "code"
        ] == ErrorCode.TEMPLATE_NOT_FOUND
        assert (await r.send(shop, ana, "template", pending))[
            "code"
        ] == ErrorCode.TEMPLATE_NOT_FOUND
        assert (await r.send(shop, ana, "template", paused))["code"] == ErrorCode.TEMPLATE_PAUSED
        assert (await r.send(shop, ana, "template", disabled))[
            "code"
        ] == ErrorCode.TEMPLATE_DISABLED
        r.clock.advance(hours=3)  # the pause is over
        assert "message_id" in await r.send(shop, ana, "template", paused)


async def test_blocks_hide_themselves_and_stop_both_directions(rules: RulesFactory) -> None:
    async with rules() as r:
        shop, ana = await r.business(), await r.customer()
        assert "message_id" in await r.send(ana, shop)
        block = await r.relay.http.post(
            "/v1/blocks", json={"account_id": shop.account_id}, headers=ana.auth
        )
        assert block.json() == {"account_id": shop.account_id, "new": True}
        # To the business the block looks like any undeliverable number.
        refused = await r.send(shop, ana)
        assert refused["code"] == ErrorCode.UNDELIVERABLE
        assert "block" not in refused["message"]
        assert (await r.send(ana, shop))["code"] == ErrorCode.BLOCKED_BY_YOU
        listed = await r.relay.http.get("/v1/blocks", headers=ana.auth)
        assert [b["account_id"] for b in listed.json()["blocked"]] == [shop.account_id]
        await r.relay.http.delete(f"/v1/blocks/{shop.account_id}", headers=ana.auth)
        assert "message_id" in await r.send(ana, shop)
        assert "message_id" in await r.send(shop, ana)
        # Ana had received nothing from the shop when she blocked it: the block is kept, but it
        # does not lower the shop's rating.
        standing = await r.quality(shop)
        assert (standing["blocks"], standing["uncounted"]) == (0, 1)


async def test_tier_counting_rolls_over_24_hours(rules: RulesFactory) -> None:
    async with rules(tier_ladder=[2, 4, 0]) as r:
        shop = await r.business()
        marketing = await r.template(shop, "MARKETING")
        customers = [await r.customer() for _ in range(4)]
        for c in customers:
            await r.consent(shop, c, "marketing", "opted_in", "customer")
        assert "message_id" in await r.send(shop, customers[0], "template", marketing)
        r.clock.advance(hours=1)
        assert "message_id" in await r.send(shop, customers[1], "template", marketing)
        over = await r.send(shop, customers[2], "template", marketing)
        assert over["code"] == ErrorCode.SPAM_RATE_LIMITED
        assert over["details"]["limit"] == 2
        # A customer already reached today does not count twice.
        assert "message_id" in await r.send(shop, customers[1], "template", marketing)
        # Inside an open window a template reaches no one new.
        assert "message_id" in await r.send(customers[3], shop)
        assert "message_id" in await r.send(shop, customers[3], "template", marketing)
        standing = await r.quality(shop)
        assert (standing["tier_limit"], standing["reached_24h"]) == (2, 2)
        # 24 hours after the first send, its customer no longer counts.
        r.clock.advance(ms=23 * HOUR_MS - 1)
        assert (await r.send(shop, customers[2], "template", marketing))["code"] == (
            ErrorCode.SPAM_RATE_LIMITED
        )
        r.clock.advance(ms=1)
        assert "message_id" in await r.send(shop, customers[2], "template", marketing)


async def test_tiers_step_up_with_use_and_down_with_red_quality(rules: RulesFactory) -> None:
    async with rules(tier_ladder=[2, 4, 8, 0], quality_min_delivered=1) as r:
        shop = await r.business()
        marketing = await r.template(shop, "MARKETING")
        assert (await r.quality(shop))["tier"] == 0  # first evaluation: the start tier
        customers = [await r.customer() for _ in range(3)]
        for c in customers:
            await r.consent(shop, c, "marketing", "opted_in", "customer")
        assert "message_id" in await r.send(shop, customers[0], "template", marketing)
        r.clock.advance(hours=24)
        standing = await r.quality(shop)
        # Half of the limit (1 of 2) was used over the last 7 days, quality is GREEN.
        assert (standing["tier"], standing["tier_limit"], standing["quality"]) == (1, 4, "GREEN")
        # Customers who received its templates block: quality turns RED, and the next
        # evaluation steps down.
        for c in customers[1:]:
            assert "message_id" in await r.send(shop, c, "template", marketing)
        for c in customers:
            await r.deliver(c)
        for c in customers:
            await r.relay.http.post(
                "/v1/blocks", json={"account_id": shop.account_id}, headers=c.auth
            )
        r.clock.advance(hours=24)
        standing = await r.quality(shop)
        assert (standing["quality"], standing["tier"], standing["blocks"]) == ("RED", 0, 3)


async def test_verified_businesses_start_one_step_up(rules: RulesFactory) -> None:
    async with rules() as r:
        shop = await r.business()
        token = await r.relay.ctx.operator.create_token("ops", by="test")
        verified = await r.relay.http.post(
            f"/v1/admin/businesses/{shop.account_id}/verify",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert verified.status_code == 200, verified.text
        assert (await r.quality(shop))["tier_limit"] == 2_000


async def test_throughput_and_pair_limits(rules: RulesFactory) -> None:
    async with rules(business_throughput_mps=3, pair_burst=2) as r:
        shop = await r.business()
        ana, ben = await r.customer(), await r.customer()
        assert "message_id" in await r.send(ana, shop)
        assert "message_id" in await r.send(ben, shop)
        assert "message_id" in await r.send(shop, ana)
        assert "message_id" in await r.send(shop, ana)
        assert (await r.send(shop, ana))["code"] == ErrorCode.PAIR_RATE_LIMITED
        assert "message_id" in await r.send(shop, ben)
        # Three sends this second took the business's budget (the refused one did not).
        over = await r.send(shop, ben)
        assert over["code"] == ErrorCode.THROUGHPUT_REACHED
        assert over["details"]["retry_after_ms"] > 0
        r.clock.advance(seconds=1)
        assert "message_id" in await r.send(shop, ben)
        # The operator raises the business's throughput, never above the maximum.
        token = await r.relay.ctx.operator.create_token("ops", by="test")
        ops = {"Authorization": f"Bearer {token}"}
        path = f"/v1/admin/businesses/{shop.account_id}/throughput"
        raised = await r.relay.http.put(path, json={"messages_per_second": 500}, headers=ops)
        assert raised.json()["throughput_mps"] == 500
        too_much = await r.relay.http.put(path, json={"messages_per_second": 5000}, headers=ops)
        assert too_much.json()["error"]["code"] == ErrorCode.INVALID_PARAMETER
        refused = await r.relay.http.put(path, json={"messages_per_second": 500}, headers=shop.auth)
        assert refused.status_code == 401


async def test_templates_are_priced_and_billed_once_when_delivered(rules: RulesFactory) -> None:
    async with rules() as r:
        shop = await r.business(phone="+4930901820")
        ana = await r.customer("+4915112340077")
        marketing = await r.template(shop, "MARKETING")
        utility = await r.template(shop, "UTILITY")
        await r.consent(shop, ana, "marketing", "opted_in", "customer")
        await r.consent(shop, ana, "utility", "opted_in", "customer")
        sent = await r.send(shop, ana, "template", marketing)
        assert sent["pricing"] == {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": "marketing",
        }
        assert "message_id" in await r.send(ana, shop)
        inside = await r.send(shop, ana, "template", utility)
        assert inside["pricing"]["billable"] is False
        assert inside["pricing"]["type"] == "free_customer_service"
        session = await r.send(shop, ana, client_msg_id="reply-1")
        # A resend is answered like its original, pricing facts included.
        for original, again in (
            (sent, await r.send(shop, ana, "template", marketing, sent["client_msg_id"])),
            (session, await r.send(shop, ana, client_msg_id="reply-1")),
        ):
            assert again["duplicate"] is True
            assert (again["message_id"], again["pricing"]) == (
                original["message_id"],
                original["pricing"],
            )

        async def charged() -> list[Any]:
            async with r.relay.ctx.db.read() as conn:
                rows = await conn.execute(select(ledger.c.message_id, ledger.c.price_micros))
                return list(rows.all())

        assert await charged() == []  # accepted is not delivered
        pending = await r.relay.http.get("/v1/messages", headers=ana.auth)
        envelopes = pending.json()["envelopes"]
        # The recipient learns which template each template message was accepted as.
        refs = {e["message_id"]: e["template_ref"] for e in envelopes}
        assert refs == {
            sent["message_id"]: str(marketing),
            inside["message_id"]: str(utility),
            session["message_id"]: None,
        }
        ids = [e["id"] for e in envelopes]
        await r.relay.http.post("/v1/messages/ack", json={"ids": ids}, headers=ana.auth)
        await r.relay.http.post("/v1/messages/ack", json={"ids": ids}, headers=ana.auth)
        assert await charged() == [(sent["message_id"], 131_000)]  # DE marketing default
        events = (await r.relay.http.get("/v1/messages", headers=shop.auth)).json()["envelopes"]
        delivered = {e["message_id"]: e["pricing"] for e in events if e["kind"] == "delivered"}
        assert delivered[sent["message_id"]]["billable"] is True
        assert delivered[inside["message_id"]]["category"] == "utility"
        async with r.relay.ctx.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(ledger))).scalar_one()
        assert total == 1


async def test_reports_lower_quality_and_may_block(rules: RulesFactory) -> None:
    async with rules(quality_min_delivered=40) as r:
        shop, ana = await r.business(), await r.customer()
        assert "message_id" in await r.send(ana, shop)
        assert "message_id" in await r.send(shop, ana)
        await r.deliver(ana)  # ana is the shop's customer: her report counts
        report = await r.relay.http.post(
            "/v1/reports",
            json={"account_id": shop.account_id, "reason": "spam", "block": True},
            headers=ana.auth,
        )
        assert report.status_code == 202, report.text
        bad = await r.relay.http.post(
            "/v1/reports", json={"account_id": shop.account_id, "reason": "meh"}, headers=ana.auth
        )
        assert bad.json()["error"]["code"] == ErrorCode.INVALID_PARAMETER
        standing = await r.quality(shop)
        assert (standing["reports"], standing["quality"]) == (1, "YELLOW")
        assert (await r.send(shop, ana))["code"] == ErrorCode.UNDELIVERABLE
        # A customer has no business standing; another business sees only its own.
        refused = await r.relay.http.get("/v1/business/quality", headers=ana.auth)
        assert refused.json()["error"]["code"] == ErrorCode.NOT_A_BUSINESS
        other = await r.business("Kiosk")
        assert (await r.quality(other))["reports"] == 0


async def test_typing_indicators_need_the_window_but_take_no_rate_tokens(
    rules: RulesFactory,
) -> None:
    async with rules() as r:
        shop, ana = await r.business(), await r.customer()
        outside = await r.send(shop, ana, "system")
        assert outside["code"] == ErrorCode.REENGAGEMENT
        assert "message_id" in await r.send(ana, shop)
        # Far more typing indicators than the pair's burst of 20 allows messages.
        for _ in range(50):
            typing = await r.send(shop, ana, "system")
            assert "message_id" in typing, typing
            assert typing["pricing"] is None
        reply = await r.send(shop, ana)
        assert "message_id" in reply, reply
        assert reply["pricing"]["category"] == "service"
        r.clock.advance(hours=24)
        assert (await r.send(shop, ana, "system"))["code"] == ErrorCode.REENGAGEMENT

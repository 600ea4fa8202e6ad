"""Blocks and reports cannot be used to sink a business: only its recent recipients lower its
quality rating, each once per quality period; everything else is kept for the operator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from relay.billing.factories import JAN_2026, LIMITS, UNLIMITED, Billing
from support import Device, MakeRelay

from tresen.core.clock import ManualClock

DAY_MS = 24 * 3_600_000


@pytest.fixture
async def b(make_relay: MakeRelay) -> AsyncIterator[Billing]:
    clock = ManualClock(JAN_2026)
    async with make_relay(clock=clock, policy=UNLIMITED, limits=LIMITS) as relay:
        token = await relay.ctx.operator.create_token("quality", by="test")
        yield Billing(relay, clock, {"Authorization": f"Bearer {token}"})


async def recipient(b: Billing, shop: Device) -> Device:
    """A customer who wrote to the shop and received its answer."""
    customer = await b.customer()
    assert "message_id" in await b.send(customer, shop), "customer → shop"
    assert "message_id" in await b.send(shop, customer), "shop → customer"
    assert len(await b.deliver(customer)) == 1
    return customer


async def report(b: Billing, reporter: Device, shop: Device) -> None:
    r = await b.http.post(
        "/v1/reports", json={"account_id": shop.account_id, "reason": "spam"}, headers=reporter.auth
    )
    assert r.status_code == 202, r.text


async def block(b: Billing, blocker: Device, shop: Device) -> None:
    r = await b.http.post("/v1/blocks", json={"account_id": shop.account_id}, headers=blocker.auth)
    assert r.status_code == 201, r.text


async def standing(b: Billing, shop: Device) -> dict[str, Any]:
    r = await b.admin("GET", f"/v1/admin/businesses/{shop.account_id}/quality")
    assert r.status_code == 200, r.text
    own = await b.http.get("/v1/business/quality", headers=shop.auth)
    assert own.json() == r.json()
    body: dict[str, Any] = r.json()
    return body


async def test_strangers_cannot_report_a_business_down(b: Billing) -> None:
    shop = await b.business()
    # 100 accounts that never heard from the shop report it, and one of them 100 times more.
    strangers = [await b.relay.register() for _ in range(100)]
    for stranger in strangers:
        await report(b, stranger, shop)
    for _ in range(100):
        await report(b, strangers[0], shop)
    await block(b, strangers[1], shop)

    s = await standing(b, shop)
    assert s["quality"] == "GREEN"
    assert (s["blocks"], s["reports"], s["uncounted"]) == (0, 0, 201)

    # The shop's own customers still can: 1 of at least 50 is YELLOW, 3 are RED.
    customers = [await recipient(b, shop) for _ in range(3)]
    await report(b, customers[0], shop)
    s = await standing(b, shop)
    assert (s["quality"], s["reports"], s["delivered"]) == ("YELLOW", 1, 3)
    await report(b, customers[1], shop)
    await block(b, customers[2], shop)
    s = await standing(b, shop)
    assert (s["quality"], s["blocks"], s["reports"], s["uncounted"]) == ("RED", 1, 2, 201)


async def test_a_recipient_counts_once_per_quality_period(b: Billing) -> None:
    shop = await b.business()
    angry = await recipient(b, shop)
    for _ in range(20):
        await report(b, angry, shop)
    await block(b, angry, shop)

    s = await standing(b, shop)
    assert (s["quality"], s["blocks"], s["reports"], s["uncounted"]) == ("YELLOW", 0, 1, 20)

    # A week later the first report has left the period: the next one counts again.
    b.clock.advance(hours=7 * 24, ms=1)
    s = await standing(b, shop)
    assert (s["quality"], s["reports"], s["uncounted"]) == ("GREEN", 0, 0)
    await report(b, angry, shop)
    await report(b, angry, shop)
    s = await standing(b, shop)
    assert (s["quality"], s["reports"], s["uncounted"]) == ("YELLOW", 1, 1)


async def test_only_messages_of_the_last_30_days_make_a_recipient(b: Billing) -> None:
    shop = await b.business()
    in_time, too_late = await recipient(b, shop), await recipient(b, shop)

    b.clock.advance(ms=30 * DAY_MS)
    await report(b, in_time, shop)  # received exactly 30 days ago
    b.clock.advance(ms=1)
    await report(b, too_late, shop)

    s = await standing(b, shop)
    assert (s["reports"], s["uncounted"]) == (1, 1)


async def test_the_recipient_period_is_an_operator_setting(make_relay: MakeRelay) -> None:
    clock = ManualClock(JAN_2026)
    policy = UNLIMITED | {"quality_recipient_days": 2}
    async with make_relay(clock=clock, policy=policy, limits=LIMITS) as relay:
        token = await relay.ctx.operator.create_token("quality", by="test")
        b = Billing(relay, clock, {"Authorization": f"Bearer {token}"})
        shop = await b.business()
        customer = await recipient(b, shop)
        clock.advance(hours=48, ms=1)
        await report(b, customer, shop)
        s = await standing(b, shop)
        assert (s["quality"], s["reports"], s["uncounted"]) == ("GREEN", 0, 1)

"""Retention: the relay forgets what its rules no longer need, and the rules still hold up to
the moment it does (docs/privacy.md, "What was cut").

Each test runs on SQLite and PostgreSQL, on a manual clock, and applies the periods with
``Retention.run`` (what the periodic task runs every ``retention.interval_s``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from relay.billing.factories import FEB_2026, JAN_2026, LIMITS, UNLIMITED, Billing
from sqlalchemy import ColumnElement, func, insert, select
from support import Device, MakeRelay

from tresen.core.clock import ManualClock
from tresen.relay.schema import (
    consent_log,
    consents,
    delivery_counts,
    ledger,
    lookup_budgets,
    message_pricing,
    messages,
    quality_events,
    rate_events,
    reach,
    recipients,
    service_windows,
    throttle_keys,
    verification_codes,
)

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
RETENTION = {
    "dedupe_window_s": 24 * 3600,
    "business_message_days": 7,
    "quality_detail_days": 30,
    "consent_evidence_days": 365,
    "ledger_dispute_days": 60,
}


@pytest.fixture
async def b(make_relay: MakeRelay) -> AsyncIterator[Billing]:
    clock = ManualClock(JAN_2026)
    async with make_relay(
        clock=clock, policy=UNLIMITED, limits=LIMITS, retention=RETENTION
    ) as relay:
        token = await relay.ctx.operator.create_token("retention", by="test")
        yield Billing(relay, clock, {"Authorization": f"Bearer {token}"})


async def count(b: Billing, table: Any, *where: ColumnElement[bool]) -> int:
    async with b.relay.ctx.db.read() as conn:
        value = await conn.execute(select(func.count()).select_from(table).where(*where))
        return int(value.scalar_one())


async def retain(b: Billing) -> dict[str, int]:
    return await b.relay.ctx.retention.run()


async def events(b: Billing, device: Device, kind: str) -> list[str]:
    """Message ids of the ``kind`` events waiting for ``device``; acks them."""
    found = [e for e in await b.pending(device) if e["kind"] == kind]
    await b.ack(device, [e["id"] for e in found])
    return [e["message_id"] for e in found]


async def test_a_chat_between_customers_leaves_only_a_day_of_records(b: Billing) -> None:
    anna, ben, offline = await b.customer(), await b.customer(), await b.customer()
    sent = await b.send(anna, ben, client_msg_id="hello-1")
    waiting = await b.send(anna, offline)
    assert await b.deliver(ben) == [sent["message_id"]]
    assert await events(b, anna, "delivered") == [sent["message_id"]]

    # Just inside the de-duplication window: a retried send is the same message, and a read
    # receipt still reaches the sender.
    b.clock.advance(ms=DAY_MS - 1)
    await retain(b)
    again = await b.send(anna, ben, client_msg_id="hello-1")
    assert (again["message_id"], again["duplicate"]) == (sent["message_id"], True)
    r = await b.http.post(
        "/v1/receipts", json={"message_ids": [sent["message_id"]]}, headers=ben.auth
    )
    assert r.json()["routed"] == 1
    assert await events(b, anna, "read") == [sent["message_id"]]

    b.clock.advance(ms=1)
    done = await retain(b)
    assert done["messages"] == 1
    assert await count(b, messages, messages.c.message_id == sent["message_id"]) == 0
    # The undelivered message waits for its recipient, as before.
    assert await count(b, messages, messages.c.message_id == waiting["message_id"]) == 1
    assert await b.deliver(offline) == [waiting["message_id"]]
    # After the window the same client_msg_id is a new message.
    later = await b.send(anna, ben, client_msg_id="hello-1")
    assert (later["duplicate"], later["message_id"] != sent["message_id"]) == (False, True)


async def test_a_business_message_is_kept_for_reports_then_goes_with_its_pricing(
    b: Billing,
) -> None:
    shop, customer = await b.business(), await b.customer()
    template = await b.template(shop, "MARKETING")
    await b.consent(shop, customer, "marketing")
    sent = await b.send(shop, customer, "template", template)
    await b.deliver(customer)
    this = messages.c.message_id == sent["message_id"]

    b.clock.advance(ms=7 * DAY_MS - 1)
    await retain(b)
    assert await count(b, messages, this) == 1
    # The customer can still report this very message: it counts against its template.
    r = await b.http.post(
        "/v1/reports",
        json={"account_id": shop.account_id, "reason": "spam", "message_id": sent["message_id"]},
        headers=customer.auth,
    )
    assert r.status_code == 202, r.text
    assert await count(b, quality_events, quality_events.c.template_id == template) == 1

    b.clock.advance(ms=1)
    done = await retain(b)
    assert done["business_messages"] == 1
    assert await count(b, messages, this) == 0
    assert await count(b, message_pricing) == 0
    # The charge stays: it is the bill.
    assert await count(b, ledger, ledger.c.message_id == sent["message_id"]) == 1


async def test_rule_state_is_forgotten_after_each_rules_period(b: Billing) -> None:
    shop, customer = await b.business(), await b.customer()
    template = await b.template(shop, "UTILITY")
    await b.consent(shop, customer, "utility")
    # Reach (outside a window), a delivery, the window the customer opens, a report.
    await b.send(shop, customer, "template", template)
    await b.deliver(customer)
    await b.send(customer, shop)
    r = await b.http.post(
        "/v1/reports",
        json={"account_id": shop.account_id, "reason": "spam", "detail": "they keep writing"},
        headers=customer.auth,
    )
    assert r.status_code == 202, r.text
    # A code nobody uses, with its throttle events; a lookup.
    stranger = "+4915199990001"
    r = await b.http.post("/v1/registration/code", json={"phone": stranger})
    assert r.status_code == 202, r.text
    r = await b.http.get("/v1/accounts", params={"phone": shop.phone}, headers=customer.auth)
    assert r.status_code == 200, r.text
    async with b.relay.ctx.db.read() as conn:
        buckets = list((await conn.execute(select(rate_events.c.bucket))).scalars())
    assert buckets
    assert not [x for x in buckets if stranger[1:] in x or "127.0.0.1" in x], buckets
    rows = {
        "windows": (service_windows,),
        "reach": (reach,),
        "recipients": (recipients,),
        "details": (quality_events, quality_events.c.detail != ""),
        "counts": (delivery_counts,),
        "codes": (verification_codes,),
        "throttle": (rate_events,),
        "budgets": (lookup_budgets,),
    }

    async def left() -> set[str]:
        return {name for name, args in rows.items() if await count(b, *args)}

    assert await left() == set(rows)
    b.clock.advance(hours=1)
    await retain(b)
    # The code expired, the throttle's window passed, the lookup budget is full again.
    assert await left() == {"windows", "reach", "recipients", "details", "counts"}
    # The shop may still answer: the window is open until 24 h after the customer wrote.
    assert "message_id" in await b.send(shop, customer)
    b.clock.advance(hours=23)
    await retain(b)
    assert await left() == {"reach", "recipients", "details", "counts"}
    # With the window went the shop's right to answer freely, as it would have anyway.
    assert (await b.send(shop, customer))["code"] == 131047
    b.clock.advance(ms=7 * DAY_MS)
    await retain(b)
    assert await left() == {"recipients", "details"}
    b.clock.advance(ms=23 * DAY_MS)
    await retain(b)
    assert await left() == set()
    # The report itself stays, without its reporter: the shop's history.
    async with b.relay.ctx.db.read() as conn:
        kept = (await conn.execute(select(quality_events))).one()
    assert (kept.kind, kept.reason) == ("report", "spam")
    assert (kept.customer_account, kept.detail, kept.message_id) == ("", "", None)
    b.clock.advance(hours=2)
    await retain(b)
    assert await count(b, throttle_keys) == 0


async def test_ended_consents_lose_their_evidence_after_the_evidence_period(b: Billing) -> None:
    shop, left_, stays = await b.business(), await b.customer(), await b.customer()
    now = b.clock.now_ms()
    async with b.relay.ctx.db.write() as conn:
        for customer, state in ((left_, "opted_out"), (stays, "opted_in")):
            row = {
                "business_account": shop.account_id,
                "customer_account": customer.account_id,
                "scope": "marketing",
                "state": state,
                "source": "customer",
                "statement": b"signed statement with +49...",
                "signature": "sig",
                "device_id": 1,
            }
            await conn.execute(insert(consents).values(**row, updated_ms=now))
            await conn.execute(insert(consent_log).values(**row, at_ms=now))

    b.clock.advance(ms=365 * DAY_MS)
    await retain(b)
    assert await count(b, consent_log) == 2
    b.clock.advance(ms=1)
    await retain(b)
    async with b.relay.ctx.db.read() as conn:
        kept = {
            r.customer_account: (r.state, r.statement)
            for r in (await conn.execute(select(consents))).all()
        }
        history = list((await conn.execute(select(consent_log.c.customer_account))).scalars())
    # The opt-out stands (no business can attest over it) but its signed statement is gone;
    # the consent in force keeps its evidence and history.
    assert kept == {
        left_.account_id: ("opted_out", None),
        stays.account_id: ("opted_in", b"signed statement with +49..."),
    }
    assert history == [stays.account_id]


async def test_a_reduced_month_shows_the_same_statement(b: Billing) -> None:
    shop = await b.business()
    template = await b.template(shop, "MARKETING")
    people = [await b.customer(c) for c in ("DE", "DE", "FR")]
    for person in people:
        await b.consent(shop, person, "marketing")
        await b.send(shop, person, "template", template)
        await b.deliver(person)
    b.clock.set(FEB_2026 + HOUR_MS)
    await b.send(shop, people[0], "template", template)
    await b.deliver(people[0])

    async def statement(month: str) -> dict[str, Any]:
        r = await b.http.get(f"/v1/business/statements/{month}", headers=shop.auth)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    january = await statement("2026-01")
    assert (january["final"], january["items_total"], january["items_reduced"]) == (True, 3, 0)
    # Final on 1 February; its line items are kept through the 60 days of disputes.
    b.clock.set(FEB_2026 + 60 * DAY_MS - 1)
    await retain(b)
    assert (await statement("2026-01"))["items_total"] == 3
    b.clock.set(FEB_2026 + 60 * DAY_MS)
    done = await retain(b)
    assert done["ledger"] == 3
    reduced = await statement("2026-01")
    assert reduced["totals"] == january["totals"]
    assert reduced["grand_totals"] == january["grand_totals"]
    assert (reduced["items"], reduced["items_total"], reduced["items_reduced"]) == ([], 0, 3)
    # February is still open to disputes: its line item stays.
    assert (await statement("2026-02"))["items_total"] == 1
    assert await count(b, ledger) == 1


async def test_devices_show_the_day_they_were_seen(b: Billing) -> None:
    retention = b.relay.ctx.retention
    # The periodic task runs once retention.interval_s (600 s) passed on the relay's clock.
    b.clock.advance(seconds=599)
    assert await retention.run_if_due() is None
    b.clock.advance(seconds=1)
    assert await retention.run_if_due() is not None
    b.clock.advance(hours=13, minutes=7)
    device = await b.customer()
    r = await b.http.get("/v1/devices", headers=device.auth)
    assert r.status_code == 200, r.text
    [listed] = r.json()
    assert (listed["created_ms"], listed["last_seen_ms"]) == (JAN_2026, JAN_2026)

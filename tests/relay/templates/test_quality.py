"""Templates that customers block or report too often are paused, then disabled; the clock
decides when a pause ends."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import insert, update
from support import RunningRelay

from tresen.core.clock import ManualClock
from tresen.relay.schema import delivery_counts, quality_events
from tresen.relay.templates.repo import templates_by_ids
from tresen.wire.templates import TemplateStatus

# Thursday 2026-01-01, 08:00 UTC: the pauses below end on the same UTC day.
EIGHT_AM = 1_767_225_600_000 + 8 * 3_600_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


async def delivered(relay: RunningRelay, business: str, template_id: str, count: int) -> None:
    day = relay.ctx.clock.now_ms() // DAY_MS
    d = delivery_counts
    key = (d.c.business_account == business, d.c.template_id == int(template_id), d.c.day == day)
    async with relay.ctx.db.write() as conn:
        if (
            await conn.execute(update(d).where(*key).values(delivered=d.c.delivered + count))
        ).rowcount:
            return
        await conn.execute(
            insert(d).values(
                business_account=business, template_id=int(template_id), day=day, delivered=count
            )
        )


async def reported(
    relay: RunningRelay,
    business: str,
    template_id: str,
    count: int,
    kind: str = "report",
    customer: str | None = None,
) -> None:
    """``count`` reports of the template, each by a customer of its own unless ``customer``."""
    now = relay.ctx.clock.now_ms()
    async with relay.ctx.db.write() as conn:
        for _ in range(count):
            await conn.execute(
                insert(quality_events).values(
                    business_account=business,
                    customer_account=customer or secrets.token_hex(16),
                    kind=kind,
                    reason="spam",
                    message_id=secrets.token_hex(16),
                    template_id=int(template_id),
                    at_ms=now,
                )
            )


async def evaluate(tpl: Any) -> list[dict[str, Any]]:
    r = await tpl.http.post("/v1/admin/templates/quality", headers=await tpl.operator())
    assert r.status_code == 200, r.text
    changes: list[dict[str, Any]] = r.json()["changes"]
    return changes


async def test_reports_pause_then_disable_a_template(
    make_relay: Any, templates_of: Any, make_template: Any
) -> None:
    clock = ManualClock(EIGHT_AM)
    async with make_relay(clock=clock) as relay:
        tpl = templates_of(relay)
        shop = await tpl.business()
        business = shop.account_id
        noisy = await tpl.approved(shop)
        quiet = await tpl.approved(shop, make_template(name="order_delayed"))
        await delivered(relay, business, noisy, 100)
        await delivered(relay, business, quiet, 100)

        # 4 reports per 100 delivered: YELLOW, still sendable.
        await reported(relay, business, noisy, 3)
        await reported(relay, business, noisy, 1, kind="block")
        await evaluate(tpl)
        assert (await tpl.own(shop, noisy))["quality_score"] == {"score": "YELLOW"}
        assert (await tpl.own(shop, noisy))["status"] == "APPROVED"
        assert (await tpl.own(shop, quiet))["quality_score"] == {"score": "GREEN"}

        # 6 per 100: RED, paused for the first pause (3 h).
        await reported(relay, business, noisy, 2)
        [change] = [c for c in await evaluate(tpl) if c["id"] == noisy]
        assert (change["status"], change["quality"]) == ("PAUSED", "RED")
        own = await tpl.own(shop, noisy)
        assert own["status"] == "PAUSED"
        assert own["paused_until_ms"] == EIGHT_AM + 3 * HOUR_MS
        async with relay.ctx.db.read() as conn:
            row = (await templates_by_ids(conn, [int(noisy), int(quiet), 999]))[int(noisy)]
        assert row.status_at(clock.now_ms()) is TemplateStatus.PAUSED
        assert (await tpl.own(shop, quiet))["status"] == "APPROVED"

        # The pause ends on time, whether or not anything evaluates in between.
        clock.advance(hours=3, ms=-1)
        assert (await tpl.own(shop, noisy))["status"] == "PAUSED"
        clock.advance(ms=1)
        assert (await tpl.own(shop, noisy))["status"] == "APPROVED"
        assert row.status_at(clock.now_ms()) is TemplateStatus.APPROVED
        # The old reports alone do not pause it again.
        await evaluate(tpl)
        assert (await tpl.own(shop, noisy))["status"] == "APPROVED"
        assert (await tpl.own(shop, noisy))["quality_score"] == {"score": "RED"}

        # New reports after the pause: the second pause, 6 h.
        clock.advance(minutes=10)
        await delivered(relay, business, noisy, 100)
        await reported(relay, business, noisy, 12)
        await evaluate(tpl)
        own = await tpl.own(shop, noisy)
        assert own["status"] == "PAUSED"
        assert own["paused_until_ms"] == clock.now_ms() + 6 * HOUR_MS

        # The pauses are used up: the next RED disables it for good.
        clock.advance(hours=6)
        await reported(relay, business, noisy, 12)
        await evaluate(tpl)
        assert (await tpl.own(shop, noisy))["status"] == "DISABLED"
        clock.advance(hours=48)
        await evaluate(tpl)
        assert (await tpl.own(shop, noisy))["status"] == "DISABLED"
        assert (await tpl.own(shop, quiet))["status"] == "APPROVED"

        actions = [a for op, a in await tpl.audit_actions(business) if op == "system"]
        assert actions == [
            "pause_template",
            "resume_template",
            "pause_template",
            "resume_template",
            "disable_template",
        ]


async def test_a_few_early_reports_do_not_pause_a_new_template(
    make_relay: Any, templates_of: Any
) -> None:
    clock = ManualClock(EIGHT_AM)
    async with make_relay(clock=clock) as relay:
        tpl = templates_of(relay)
        shop = await tpl.business()
        template_id = await tpl.approved(shop)
        await delivered(relay, shop.account_id, template_id, 3)
        await reported(relay, shop.account_id, template_id, 1)

        await evaluate(tpl)

        # One report among 3 deliveries counts against at least quality_min_delivered (50):
        # 2 %, YELLOW, not the RED that 1 in 3 would be.
        own = await tpl.own(shop, template_id)
        assert (own["status"], own["quality_score"]["score"]) == ("APPROVED", "YELLOW")


async def test_reports_older_than_the_quality_window_are_forgotten(
    make_relay: Any, templates_of: Any
) -> None:
    clock = ManualClock(EIGHT_AM)
    async with make_relay(clock=clock) as relay:
        tpl = templates_of(relay)
        shop = await tpl.business()
        template_id = await tpl.approved(shop)
        await delivered(relay, shop.account_id, template_id, 100)
        await reported(relay, shop.account_id, template_id, 3)
        await evaluate(tpl)
        assert (await tpl.own(shop, template_id))["quality_score"]["score"] == "YELLOW"

        clock.advance(hours=8 * 24)
        await evaluate(tpl)

        own = await tpl.own(shop, template_id)
        assert own["quality_score"]["score"] == "UNKNOWN"
        assert own["status"] == "APPROVED"


async def test_one_customer_reporting_again_and_again_counts_once(
    make_relay: Any, templates_of: Any
) -> None:
    clock = ManualClock(EIGHT_AM)
    async with make_relay(clock=clock) as relay:
        tpl = templates_of(relay)
        shop = await tpl.business()
        template_id = await tpl.approved(shop)
        await delivered(relay, shop.account_id, template_id, 100)
        await reported(relay, shop.account_id, template_id, 20, customer="c" * 32)
        await reported(relay, shop.account_id, template_id, 5, kind="block", customer="c" * 32)

        await evaluate(tpl)

        # One unhappy customer among 100 deliveries: GREEN, not the RED of 25 events.
        own = await tpl.own(shop, template_id)
        assert (own["status"], own["quality_score"]["score"]) == ("APPROVED", "GREEN")

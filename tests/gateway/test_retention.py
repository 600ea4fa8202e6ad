"""The gateway's retention: each period deletes or reduces what its rule no longer needs, keeps
what is recent, and changes nothing a user would see (a campaign's results, a throttled
sign-in); on SQLite and PostgreSQL, on the gateway's clock."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, cast

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Table, insert, select
from typer.testing import CliRunner

from tresen.cli.main import app as tresen
from tresen.client.store import LocalStore, MessageStatus, StoredMessage
from tresen.core.clock import DAY_MS, ManualClock
from tresen.core.db import Database
from tresen.gateway.campaigns import CampaignRepo, Campaigns
from tresen.gateway.campaigns.model import CampaignId
from tresen.gateway.customers.audit import recent_audit
from tresen.gateway.customers.service import CustomerData
from tresen.gateway.inbox.agents import AgentError, Agents, LoginThrottled, Role
from tresen.gateway.retention.service import Retention
from tresen.gateway.schema import (
    activity,
    agent_sessions,
    bot_log,
    campaign_recipients,
    campaigns,
    contacts,
    conversations,
    early_statuses,
    login_failures,
    messages,
    subscriber_imports,
    subscriber_lists,
    subscribers,
    webhook_events,
)
from tresen.gateway.settings import GatewaySettings

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "Korrekt Pferd Batterie"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def settings(**retention: Any) -> GatewaySettings:
    return GatewaySettings(retention=retention)


async def _add(db: Database, table: Table, *rows: dict[str, Any]) -> None:
    async with db.write() as conn:
        for row in rows:
            await conn.execute(insert(table).values(**row))


async def _all(db: Database, table: Table) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(select(table))).all())


def _event(event_id: str, state: str, at_ms: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "subscription_id": 1,
        "conversation": "acct",
        "field": "messages",
        "body": b'{"text":"hello"}',
        "state": state,
        "attempts": 1,
        "next_attempt_ms": at_ms,
        "created_ms": at_ms,
    }


def _bot(kind: str, at_ms: int) -> dict[str, Any]:
    return {"contact": "acct", "kind": kind, "detail": f"{kind} detail", "at_ms": at_ms}


async def _seed_rows(db: Database, at_ms: int, tag: str) -> None:
    """One row of each kind retention looks at, made at ``at_ms``."""
    await _add(db, webhook_events, _event(f"dead-{tag}", "dead", at_ms))
    await _add(db, webhook_events, _event(f"pending-{tag}", "pending", at_ms))
    await _add(
        db, early_statuses, {"relay_message_id": f"m-{tag}", "status": "delivered", "at_ms": at_ms}
    )
    await _add(db, bot_log, _bot("answered", at_ms), _bot("unanswered", at_ms))
    await _add(
        db,
        subscriber_imports,
        {
            "list_id": 1,
            "by": "owner",
            "created_ms": at_ms,
            "accepted": 1,
            "refused": 1,
            "counts": '{"subscribed": 1}',
            "rows": f'[[2, "+4915100000{tag}", "refused", "invalid_phone"]]',
        },
    )
    await _add(
        db,
        subscribers,
        {
            "list_id": 1,
            "account_id": f"gone-{tag}",
            "phone": f"+4915111111{tag}",
            "state": "unsubscribed",
            "source": "import",
            "attributes": '{"name": "Anna"}',
            "evidence": "Booking TA 123",
            "reason": "STOP",
            "created_ms": at_ms,
            "updated_ms": at_ms,
        },
        {
            "list_id": 1,
            "account_id": f"here-{tag}",
            "phone": f"+4915122222{tag}",
            "state": "subscribed",
            "source": "import",
            "attributes": '{"name": "Ben"}',
            "evidence": "Booking TA 456",
            "created_ms": at_ms,
            "updated_ms": at_ms,
        },
    )


async def test_old_rows_of_each_kind_go_and_recent_ones_stay(
    db: Database, clock: ManualClock
) -> None:
    await _add(
        db,
        subscriber_lists,
        {
            "name": "News",
            "purpose": "marketing",
            "description": "",
            "confirmation": "",
            "created_ms": clock.now_ms(),
        },
    )
    await _seed_rows(db, clock.now_ms(), "01")
    clock.advance(hours=100 * 24)
    await _seed_rows(db, clock.now_ms() - DAY_MS, "02")
    retention = Retention(db, clock, settings(chunk_rows=10))

    done = await retention.run()

    assert done["webhook_events"] == 1
    assert sorted(r.event_id for r in await _all(db, webhook_events)) == [
        "dead-02",
        "pending-01",  # still being delivered: only dead letters go
        "pending-02",
    ]
    assert [r.relay_message_id for r in await _all(db, early_statuses)] == ["m-02"]
    assert sorted((r.kind, r.at_ms < clock.now_ms() - DAY_MS) for r in await _all(db, bot_log)) == [
        ("answered", False),
        ("unanswered", False),
        ("unanswered", True),  # the business's questions to answer stay until dismissed
    ]
    old, recent = sorted(await _all(db, subscriber_imports), key=lambda r: r.created_ms)
    assert (old.rows, old.accepted, old.refused, old.counts) == ("[]", 1, 1, '{"subscribed": 1}')
    assert "+491510000002" in recent.rows
    kept = {r.account_id: r for r in await _all(db, subscribers)}
    gone = kept["gone-01"]
    # What shows the opt-out stays; the business's attributes and the evidence go.
    assert (gone.phone, gone.state, gone.reason) == ("+491511111101", "unsubscribed", "STOP")
    assert (gone.attributes, gone.evidence) == ("{}", None)
    assert kept["gone-02"].attributes == '{"name": "Anna"}'
    assert kept["here-01"].attributes == '{"name": "Ben"}'
    assert kept["here-01"].evidence == "Booking TA 456"

    # Nothing left to do: a second run changes nothing.
    assert not any((await retention.run()).values())


async def test_dead_letters_stay_when_their_period_is_off(db: Database, clock: ManualClock) -> None:
    await _add(db, webhook_events, _event("dead", "dead", clock.now_ms()))
    clock.advance(hours=3650 * 24)
    done = await Retention(db, clock, settings(dead_webhook_days=None)).run()
    assert "webhook_events" not in done
    assert len(await _all(db, webhook_events)) == 1


def _recipient(campaign_id: int, n: int, state: str, at_ms: int, **values: Any) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "account_id": f"acct{n}",
        "phone": f"+49151{n:07d}",
        "parameters": '[{"type": "text", "text": "Anna"}]',
        "state": state,
        "client_msg_id": f"cmp{campaign_id}-acct{n}",
        "wamid": f"wamid.{n}" if state != "failed" else None,
        "sent_ms": at_ms if state != "failed" else None,
        **values,
    }


async def _campaign(db: Database, name: str, state: str, finished_ms: int | None) -> int:
    async with db.write() as conn:
        result = await conn.execute(
            insert(campaigns).values(
                name=name,
                template_name="spring_sale",
                language="en",
                category="marketing",
                audience="{}",
                parameters="[]",
                schedule="{}",
                state=state,
                created_ms=0,
                updated_ms=finished_ms or 0,
                finished_ms=finished_ms,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


async def _rates() -> list[dict[str, Any]]:
    return [
        {"country": "DE", "category": "marketing", "price_micros": 110_000, "currency": "EUR"},
        {"country": "*", "category": "marketing", "price_micros": 50_000, "currency": "EUR"},
    ]


async def test_a_finished_campaign_keeps_its_results_when_its_recipients_go(
    db: Database, clock: ManualClock
) -> None:
    repo = CampaignRepo(db)
    service = Campaigns(
        db, repo, cast(Any, None), cast(Any, None), clock,
        templates=cast(Any, None), rate_card=_rates, account_of=cast(Any, None),
        phone_of=cast(Any, None),
    )  # fmt: skip
    now = clock.now_ms()
    done = await _campaign(db, "Spring sale", "done", now)
    running = await _campaign(db, "Summer sale", "running", None)
    billable = json.dumps({"billable": True, "category": "marketing"})
    await _add(
        db,
        campaign_recipients,
        _recipient(done, 1, "read", now, delivered_ms=now, read_ms=now, replied_ms=now,
                   pricing=billable),
        _recipient(done, 2, "delivered", now, delivered_ms=now, pricing=billable),
        _recipient(done, 3, "sent", now),
        _recipient(done, 4, "failed", now, reason="not on WhatsApp", error_code=131026),
        _recipient(done, 5, "opted_out", now, sent_ms=None, wamid=None),
        _recipient(done, 6, "delivered", now, delivered_ms=now, phone="",
                   account_id="erased-0a1b", pricing=billable),
        _recipient(running, 7, "queued", now, sent_ms=None, wamid=None),
    )  # fmt: skip
    before = await service.results(CampaignId(done))
    counts_before = (await service.get(CampaignId(done))).counts
    assert (before.sent, before.delivered, before.read, before.replied) == (4, 3, 1, 1)
    assert before.cost_micros == 2 * 110_000 + 50_000

    clock.advance(hours=89 * 24)
    retention = Retention(db, clock, settings(chunk_rows=10))
    assert (await retention.run())["campaign_recipients"] == 0  # not yet
    clock.advance(hours=2 * 24)
    reduced = await retention.run()

    assert (reduced["campaigns"], reduced["campaign_recipients"]) == (1, 6)
    assert await service.recipients(CampaignId(done)) == []
    assert await service.results(CampaignId(done)) == before
    assert (await service.get(CampaignId(done))).counts == counts_before
    # A campaign still sending keeps its recipients, whatever their age.
    assert [r.account_id for r in await service.recipients(CampaignId(running))] == ["acct7"]
    assert not any((await retention.run()).values())


async def test_a_sign_in_stays_throttled_inside_the_window_and_names_no_address(
    db: Database, clock: ManualClock
) -> None:
    configured = GatewaySettings(
        inbox={"max_failures": 3, "throttle_window_s": 900, "session_idle_s": 600}
    )
    inbox = configured.inbox
    team = Agents(
        db, clock, hasher=FAST, max_failures=inbox.max_failures,
        throttle_window_s=inbox.throttle_window_s, session_idle_s=inbox.session_idle_s,
        address_key=os.urandom(32),
    )  # fmt: skip
    await team.create("anna", "Anna", Role.OWNER, PASSWORD)
    stale, _ = await team.sign_in("anna", PASSWORD, "192.0.2.7")  # never used again
    for _ in range(3):
        with pytest.raises(AgentError):
            await team.sign_in("anna", "wrong password", "198.51.100.23")
    retention = Retention(db, clock, configured)

    clock.advance(seconds=899)
    done = await retention.run()
    assert done["agent_sessions"] == 1  # idle for longer than session_idle_s
    assert done["login_failures"] == 0
    with pytest.raises(LoginThrottled):
        await team.sign_in("anna", PASSWORD, "198.51.100.23")
    stored = [r.key for r in await _all(db, login_failures)]
    assert "user:anna" in stored
    assert not any("198.51.100.23" in key for key in stored)

    clock.advance(seconds=1)
    assert (await retention.run())["login_failures"] == 2
    assert await _all(db, login_failures) == []
    await team.sign_in("anna", PASSWORD, "198.51.100.23")
    assert len(await _all(db, agent_sessions)) == 1
    assert await team.session(stale) is None


def _stored(message_id: str, server_ms: int) -> StoredMessage:
    return StoredMessage(
        message_id=message_id,
        chat="customer",
        outgoing=False,
        sender_account="customer",
        sender_device=1,
        client_msg_id=None,
        payload=b'{"text": "Where is my order 4711?"}',
        status=MessageStatus.RECEIVED,
        server_ms=server_ms,
        error=None,
    )


async def test_the_device_store_forgets_payloads_but_still_knows_the_messages(
    db: Database, clock: ManualClock, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "device" / "client.db", os.urandom(32))
    try:
        week = 7 * DAY_MS
        store.put_message(_stored("old", clock.now_ms() - week - 1))
        store.put_message(_stored("new", clock.now_ms() - week + 1000))
        done = await Retention(
            db, clock, settings(chunk_rows=10), clear_payloads=store.clear_payloads
        ).run()
        assert done["device_payloads"] == 1
        old, new = store.message("old"), store.message("new")
        assert old is not None
        assert old.payload is None
        assert new is not None
        assert new.payload is not None
        # A repeated delivery of the old message is still recognised.
        assert store.has_message("old")
    finally:
        store.close()


async def _conversation(db: Database, account_id: str, status: str, at_ms: int) -> None:
    await _add(
        db,
        contacts,
        {
            "account_id": account_id,
            "phone": "+4915100000" + account_id[-2:],
            "wa_id": "4915100000" + account_id[-2:],
            "user_id": "DE." + account_id,
            "created_ms": at_ms,
        },
    )
    await _add(
        db,
        messages,
        {
            "wamid": "wamid." + account_id,
            "contact": account_id,
            "direction": "in",
            "origin": "customer",
            "type": "text",
            "content": '{"body": "Where is my order 4711?"}',
            "status": "received",
            "created_ms": at_ms,
            "updated_ms": at_ms,
        },
    )
    await _add(
        db,
        conversations,
        {
            "contact": account_id,
            "status": status,
            "status_ms": at_ms,
            "read_ms": at_ms,
            "updated_ms": at_ms,
        },
    )


async def test_conversations_are_kept_unless_the_business_sets_a_period(
    db: Database, clock: ManualClock
) -> None:
    forgotten: list[str] = []

    async def forget_peer(account_id: str) -> int:
        forgotten.append(account_id)
        return 1

    async def no_media(media_id: str) -> None:
        raise AssertionError(media_id)

    customers = CustomerData(
        db, clock, business=dict, delete_media=no_media, forget_peer=forget_peer
    )
    start = clock.now_ms()
    await _conversation(db, "resolved01", "resolved", start)
    await _conversation(db, "open000002", "open", start)
    await _conversation(db, "noted00003", "resolved", start)
    clock.advance(hours=40 * 24)
    # A note of the team keeps a resolved conversation alive.
    await _add(
        db,
        activity,
        {"contact": "noted00003", "kind": "note", "detail": "VIP", "at_ms": clock.now_ms()},
    )
    kept = await Retention(db, clock, settings(), erase_inactive=customers.erase_inactive).run()
    assert "conversations" not in kept

    retention = Retention(
        db, clock, settings(conversation_days=30), erase_inactive=customers.erase_inactive
    )
    done = await retention.run()

    assert done["conversations"] == 1
    assert sorted(r.contact for r in await _all(db, conversations)) == [
        "noted00003",
        "open000002",
    ]
    assert sorted(r.account_id for r in await _all(db, contacts)) == ["noted00003", "open000002"]
    assert sorted(r.contact for r in await _all(db, messages)) == ["noted00003", "open000002"]
    assert forgotten == ["resolved01"]
    async with db.read() as conn:
        audit = await recent_audit(conn)
    assert [(a["action"], a["subject"], a["reason"]) for a in audit] == [
        ("conversations_expired", None, "retention.conversation_days")
    ]
    assert audit[0]["details"]["customers"] == 1
    assert (await retention.run())["conversations"] == 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_operator_applies_the_periods_now_from_the_command_line(
    db: Database, tmp_path: Path
) -> None:
    await _add(db, webhook_events, _event("dead", "dead", 0), _event("pending", "pending", 0))
    await _add(db, bot_log, _bot("answered", 0))
    result = await asyncio.to_thread(
        CliRunner().invoke,
        tresen,
        ["gateway", "retention", "run", "--data-dir", str(tmp_path / "gw")],
        env={"TRESEN_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"},
    )
    assert result.exit_code == 0, result.output
    assert "webhook_events: 1\n" in result.output
    assert "bot_log: 1\n" in result.output
    assert [r.event_id for r in await _all(db, webhook_events)] == ["pending"]

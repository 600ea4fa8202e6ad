"""The outbox: subscriptions and events queued in the transaction of their change, on both
backends."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from webhook_support import APP_SECRET, VERIFY_TOKEN, WABA_ID

from tresen.core.clock import ManualClock
from tresen.core.db import Database
from tresen.gateway.schema import webhook_events, webhook_subscriptions
from tresen.gateway.settings import WebhookSettings
from tresen.gateway.webhooks import (
    InvalidSubscription,
    NewEvent,
    Outbox,
    SubscriptionLimitReached,
    SubscriptionNotFound,
    encode_event,
)

SHOP = "https://shop.example/webhooks"
CRM = "https://crm.example/hook"


def text_message(body: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "messages": [{"type": "text", "text": {"body": body}}]}


async def events(db: Database) -> list[Any]:
    async with db.read() as conn:
        result = await conn.execute(select(webhook_events).order_by(webhook_events.c.id))
        return list(result.all())


async def enqueue(outbox: Outbox, db: Database, **kwargs: Any) -> int:
    kwargs.setdefault("waba_id", WABA_ID)
    kwargs.setdefault("conversation", "c1")
    kwargs.setdefault("field", "messages")
    kwargs.setdefault("value", text_message("hi"))
    async with db.write() as conn:
        return await outbox.enqueue(conn, **kwargs)


async def test_nothing_is_queued_without_subscribers(outbox: Outbox, db: Database) -> None:
    assert await enqueue(outbox, db) == 0
    assert await events(db) == []


async def test_one_row_per_subscriber_of_the_field_with_the_exact_signed_body(
    outbox: Outbox, db: Database, clock: ManualClock, handshake_http: httpx.AsyncClient
) -> None:
    shop = await outbox.subscribe(SHOP, VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http)
    crm = await outbox.subscribe(
        CRM, VERIFY_TOKEN, "crm-secret", ["messages", "account_update"], http=handshake_http
    )
    assert await enqueue(outbox, db, value=text_message("Grüß Gott")) == 2
    assert await enqueue(outbox, db, field="account_update", conversation="account", value={}) == 1

    rows = await events(db)
    assert [(r.subscription_id, r.field) for r in rows] == [
        (shop.id, "messages"),
        (crm.id, "messages"),
        (crm.id, "account_update"),
    ]
    expected = encode_event(waba_id=WABA_ID, field="messages", value=text_message("Grüß Gott"))
    assert rows[0].body == rows[1].body == expected
    assert b"Gr\\u00fc\\u00df Gott" in rows[0].body
    assert len({r.event_id for r in rows}) == 3
    assert all(len(r.event_id) == 32 for r in rows)
    assert {(r.state, r.attempts) for r in rows} == {("pending", 0)}
    assert {r.next_attempt_ms for r in rows} == {clock.now_ms()}
    assert {r.created_ms for r in rows} == {clock.now_ms()}


async def test_time_is_in_the_entry_when_given(
    outbox: Outbox, db: Database, handshake_http: httpx.AsyncClient
) -> None:
    await outbox.subscribe(
        SHOP, VERIFY_TOKEN, APP_SECRET, ["message_template_status_update"], http=handshake_http
    )
    await enqueue(
        outbox,
        db,
        conversation="templates",
        field="message_template_status_update",
        value={"event": "APPROVED", "message_template_id": 1689556908129832},
        time_s=1751247548,
    )
    (row,) = await events(db)
    assert json.loads(row.body)["entry"][0]["time"] == 1751247548


async def test_an_event_exists_only_if_its_transaction_commits(
    outbox: Outbox, db: Database, handshake_http: httpx.AsyncClient
) -> None:
    await outbox.subscribe(SHOP, VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http)
    queued = []

    async def change_that_fails() -> None:
        async with db.write() as conn:
            queued.append(
                await outbox.enqueue(
                    conn, waba_id=WABA_ID, conversation="c1", field="messages", value={}
                )
            )
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await change_that_fails()
    assert queued == [1]
    assert await events(db) == []


async def test_bad_fields_and_conversations_are_refused(
    outbox: Outbox, db: Database, handshake_http: httpx.AsyncClient
) -> None:
    with pytest.raises(InvalidSubscription, match="unknown webhook field mesages"):
        await outbox.subscribe(SHOP, VERIFY_TOKEN, APP_SECRET, ["mesages"], http=handshake_http)
    with pytest.raises(InvalidSubscription, match="at least one field"):
        await outbox.subscribe(SHOP, VERIFY_TOKEN, APP_SECRET, [], http=handshake_http)
    with pytest.raises(InvalidSubscription, match="http"):
        await outbox.subscribe("ftp://shop.example/", VERIFY_TOKEN, APP_SECRET, ["messages"])
    with pytest.raises(ValueError, match="unknown webhook field"):
        await enqueue(outbox, db, field="mesages")
    with pytest.raises(ValueError, match="conversation"):
        await enqueue(outbox, db, conversation="")
    assert await outbox.list() == []


async def test_the_app_secret_is_stored_sealed(
    outbox: Outbox, db: Database, handshake_http: httpx.AsyncClient
) -> None:
    await outbox.subscribe(SHOP, VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http)
    async with db.read() as conn:
        row = (await conn.execute(select(webhook_subscriptions))).one()
    assert APP_SECRET.encode() not in row.app_secret
    assert row.verify_token == VERIFY_TOKEN
    (target,) = (await outbox.targets()).values()
    assert target.app_secret == APP_SECRET.encode()
    assert APP_SECRET not in repr(target)


async def test_subscribing_a_url_again_updates_it_and_the_limit_counts_urls(
    db: Database, key: bytes, clock: ManualClock, handshake_http: httpx.AsyncClient
) -> None:
    outbox = Outbox(db, key, clock, WebhookSettings(max_subscriptions=2))
    first = await outbox.subscribe(
        SHOP, VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http
    )
    again = await outbox.subscribe(
        SHOP, VERIFY_TOKEN, "new-secret", ["messages", "account_update"], http=handshake_http
    )
    assert again.id == first.id
    assert again.fields == ("messages", "account_update")
    await outbox.subscribe(CRM, VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http)
    with pytest.raises(SubscriptionLimitReached, match="allows 2"):
        await outbox.subscribe(
            "https://third.example/", VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http
        )
    assert [s.url for s in await outbox.list()] == [SHOP, CRM]
    assert (await outbox.targets())[first.id].app_secret == b"new-secret"

    await outbox.remove(CRM)
    third = await outbox.subscribe(
        "https://third.example/", VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http
    )
    assert [s.url for s in await outbox.list()] == [SHOP, third.url]


async def test_removing_a_subscription_stops_its_events_and_kills_the_pending_ones(
    outbox: Outbox, db: Database, handshake_http: httpx.AsyncClient
) -> None:
    shop = await outbox.subscribe(SHOP, VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http)
    await outbox.subscribe(CRM, VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http)
    await enqueue(outbox, db)

    removed = await outbox.remove(str(shop.id))
    assert removed.url == SHOP
    assert [s.url for s in await outbox.list()] == [CRM]
    assert await enqueue(outbox, db) == 1  # at once, not after poll_s
    rows = await events(db)
    assert [(r.subscription_id == shop.id, r.state) for r in rows] == [
        (True, "dead"),
        (False, "pending"),
        (False, "pending"),
    ]
    assert rows[0].last_error == "subscription removed"
    with pytest.raises(SubscriptionNotFound):
        await outbox.remove(SHOP)
    with pytest.raises(SubscriptionNotFound):
        await outbox.remove("https://never.example/")


async def test_a_subscription_made_by_another_process_is_used_within_poll_s(
    outbox: Outbox,
    db: Database,
    key: bytes,
    clock: ManualClock,
    webhook_settings: WebhookSettings,
    handshake_http: httpx.AsyncClient,
) -> None:
    assert await enqueue(outbox, db) == 0  # the cache is filled: nobody subscribed
    cli = Outbox(db, key, clock, webhook_settings)  # `tresen gateway webhooks add` elsewhere
    await cli.subscribe(SHOP, VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http)

    clock.advance(seconds=webhook_settings.poll_s - 1)
    assert await enqueue(outbox, db) == 0
    clock.advance(seconds=1)
    assert await enqueue(outbox, db) == 1

    await cli.remove(SHOP)
    clock.advance(seconds=webhook_settings.poll_s)
    assert await enqueue(outbox, db) == 0


async def test_stats_count_states_and_age_the_oldest_pending_event(
    outbox: Outbox, db: Database, clock: ManualClock, handshake_http: httpx.AsyncClient
) -> None:
    empty = await outbox.stats()
    assert (empty.pending, empty.delivered, empty.dead, empty.oldest_pending_age_s) == (
        0,
        0,
        0,
        None,
    )
    await outbox.subscribe(SHOP, VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http)
    made = clock.now_ms()
    await enqueue(outbox, db)
    clock.advance(seconds=90)
    await enqueue(outbox, db, conversation="c2")
    stats = await outbox.stats()
    assert (stats.pending, stats.delivered, stats.dead) == (2, 0, 0)
    assert stats.oldest_pending_ms == made
    assert stats.oldest_pending_age_s == 90


async def test_enqueue_many_writes_every_event_for_every_subscriber_in_order(
    outbox: Outbox, db: Database, handshake_http: httpx.AsyncClient
) -> None:
    shop = await outbox.subscribe(SHOP, VERIFY_TOKEN, APP_SECRET, ["messages"], http=handshake_http)
    crm = await outbox.subscribe(
        CRM, VERIFY_TOKEN, APP_SECRET, ["messages", "account_update"], http=handshake_http
    )
    async with db.write() as conn:
        count = await outbox.enqueue_many(
            conn,
            waba_id=WABA_ID,
            events=[
                NewEvent("anna", "messages", text_message("eins")),
                NewEvent("account", "account_update", {"event": "VERIFIED_ACCOUNT"}, 1751247548),
                NewEvent("anna", "messages", text_message("zwei")),
            ],
        )
    assert count == 5
    stored = [
        (r.subscription_id, r.conversation, json.loads(r.body)["entry"][0])
        for r in await events(db)
    ]
    assert [(s, c) for s, c, _ in stored] == [
        (shop.id, "anna"),
        (crm.id, "anna"),
        (crm.id, "account"),
        (shop.id, "anna"),
        (crm.id, "anna"),
    ]
    assert stored[2][2]["time"] == 1751247548
    texts = [e["changes"][0]["value"].get("messages", [{}])[0].get("text") for _, _, e in stored]
    assert texts == [{"body": "eins"}, {"body": "eins"}, None, {"body": "zwei"}, {"body": "zwei"}]
    async with db.write() as conn:
        assert await outbox.enqueue_many(conn, waba_id=WABA_ID, events=[]) == 0

"""The dispatcher against a receiver that fails in the ways receivers fail: at least once, in
order per conversation, with growing waits, dead letters and replays. Time is a manual clock;
``settle()`` waits until everything due has been tried."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import httpx
from sqlalchemy import select
from structlog.testing import capture_logs
from webhook_support import APP_SECRET, VERIFY_TOKEN, WABA_ID, Receiver

from tresen.core.clock import ManualClock
from tresen.core.db import Database
from tresen.gateway.schema import webhook_events
from tresen.gateway.settings import WebhookSettings
from tresen.gateway.webhooks import Outbox, Subscription, WebhookDispatcher, verify

SHOP = "https://shop.example/webhooks"


async def subscribe(
    outbox: Outbox, http: httpx.AsyncClient, url: str = SHOP, secret: str = APP_SECRET
) -> Subscription:
    return await outbox.subscribe(url, VERIFY_TOKEN, secret, ["messages"], http=http)


async def enqueue(outbox: Outbox, db: Database, conversation: str, seq: int) -> None:
    async with db.write() as conn:
        await outbox.enqueue(
            conn,
            waba_id=WABA_ID,
            conversation=conversation,
            field="messages",
            value={"conversation": conversation, "seq": seq, "text": f"Nachricht {seq} 👋"},
        )


async def rows(db: Database) -> list[Any]:
    async with db.read() as conn:
        result = await conn.execute(select(webhook_events).order_by(webhook_events.c.id))
        return list(result.all())


async def run_due(dispatcher: WebhookDispatcher) -> None:
    """Wake the dispatcher and wait until everything due has been tried and written."""
    dispatcher.wake()
    await dispatcher.settle()


async def run_after(dispatcher: WebhookDispatcher, clock: ManualClock, **elapsed: float) -> None:
    """Move the clock on by ``elapsed`` (``seconds=…``), then :func:`run_due`."""
    clock.advance(**elapsed)
    await run_due(dispatcher)


def by_conversation(received: list[Any]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = defaultdict(list)
    for r in received:
        seen[r.value["conversation"]].append(r.value["seq"])
    return dict(seen)


async def test_an_event_is_posted_signed_with_its_id_and_attempt(
    outbox: Outbox,
    db: Database,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
) -> None:
    await subscribe(outbox, handshake_http)
    await enqueue(outbox, db, "c1", 1)
    dispatcher = make_dispatcher()
    await run_due(dispatcher)

    (got,) = receiver.requests
    (row,) = await rows(db)
    assert got.body == row.body
    assert verify(APP_SECRET.encode(), got.body, got.signature)
    assert got.event_id == row.event_id
    assert got.attempt == 1
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == "Tresen-Gateway"
    assert (row.state, row.attempts, row.delivered_ms) == ("delivered", 1, receiver.clock.now_ms())
    stats = await outbox.stats()
    assert (stats.pending, stats.delivered, stats.dead) == (0, 1, 0)


async def test_a_receiver_down_for_a_while_gets_everything_in_order_after_growing_waits(
    outbox: Outbox,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
    webhook_settings: WebhookSettings,
) -> None:
    await subscribe(outbox, handshake_http)
    conversations = ["anna", "ben", "cem"]
    for seq in range(10):
        for c in conversations:
            await enqueue(outbox, db, c, seq)
    receiver.status = 503
    dispatcher = make_dispatcher()
    await run_due(dispatcher)

    # Only the first event of each conversation is tried while the receiver fails.
    waits: list[list[float]] = []
    for attempt in range(1, 9):
        tried = receiver.requests[-3:]
        assert len(receiver.requests) == 3 * attempt
        assert sorted(r.value["seq"] for r in tried) == [0, 0, 0]
        assert {r.attempt for r in tried} == {attempt}
        pending = [r for r in await rows(db) if r.attempts > 0]
        assert len(pending) == 3
        now = clock.now_ms()
        waits.append([(r.next_attempt_ms - now) / 1000 for r in pending])
        assert {r.last_error for r in pending} == {"HTTP 503"}
        clock.set(max(r.next_attempt_ms for r in pending))
        await run_due(dispatcher)

    for attempt, these in enumerate(waits, start=1):
        expected = min(webhook_settings.retry_max_s, 2 ** (attempt - 1))
        for wait in these:
            assert 0.9 * expected <= wait <= min(1.1 * expected, webhook_settings.retry_max_s)
    assert max(max(w) for w in waits) <= webhook_settings.retry_max_s
    assert min(waits[-1]) >= 0.9 * webhook_settings.retry_max_s  # the cap was reached

    receiver.status = 200
    await run_after(dispatcher, clock, seconds=webhook_settings.retry_max_s)

    assert by_conversation(receiver.accepted) == {c: list(range(10)) for c in conversations}
    stored = await rows(db)
    assert {r.state for r in stored} == {"delivered"}
    assert {r.event_id for r in receiver.accepted} == {r.event_id for r in stored}
    assert len(receiver.accepted) == 30  # nothing twice once it was taken


async def test_an_event_whose_answer_was_lost_comes_again_with_the_same_id_and_body(
    outbox: Outbox,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
) -> None:
    await subscribe(outbox, handshake_http)
    await enqueue(outbox, db, "c1", 1)
    await enqueue(outbox, db, "c1", 2)
    dispatcher = make_dispatcher()

    receiver.lose_answers = True  # processed, then the answer times out
    await run_due(dispatcher)
    receiver.lose_answers = False
    receiver.status = 500  # processed, then failed to answer well
    await run_after(dispatcher, clock, seconds=2)
    receiver.status = 200
    await run_after(dispatcher, clock, seconds=4)

    first, second, third, _ = receiver.requests
    assert first.event_id == second.event_id == third.event_id
    assert first.body == second.body == third.body
    assert first.signature == second.signature == third.signature
    assert [r.attempt for r in receiver.requests] == [1, 2, 3, 1]
    assert [r.value["seq"] for r in receiver.requests] == [1, 1, 1, 2]
    stored = await rows(db)
    assert [(r.state, r.attempts) for r in stored] == [("delivered", 3), ("delivered", 1)]


async def test_after_give_up_s_events_are_dead_and_a_replay_sends_them_again(
    outbox: Outbox,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
    webhook_settings: WebhookSettings,
) -> None:
    await subscribe(outbox, handshake_http)
    for seq in range(3):
        await enqueue(outbox, db, "anna", seq)
        await enqueue(outbox, db, "ben", seq)
    receiver.down = True
    dispatcher = make_dispatcher()
    await run_due(dispatcher)
    for _ in range(200):
        if (await outbox.stats()).pending == 0:
            break
        await run_after(dispatcher, clock, seconds=webhook_settings.retry_max_s)

    stored = await rows(db)
    assert {r.state for r in stored} == {"dead"}
    dead = await outbox.dead()
    assert [d.event_id for d in dead] == [r.event_id for r in stored]
    assert {d.url for d in dead} == {SHOP}
    assert {d.conversation for d in dead} == {"anna", "ben"}
    assert all(d.last_error and d.last_error.startswith("ConnectError") for d in dead)
    assert all(d.attempts >= 1 for d in dead)
    assert dead[0].attempts > 5  # the first of each conversation was retried all along
    assert [d.id for d in await outbox.dead(limit=2, after=dead[1].id)] == [d.id for d in dead[2:4]]
    stats = await outbox.stats()
    assert (stats.pending, stats.dead) == (0, 6)

    receiver.down = False
    anna = [d.event_id for d in dead if d.conversation == "anna"]
    assert await outbox.replay(anna) == 3
    await run_due(dispatcher)
    assert [r.event_id for r in receiver.accepted] == anna
    assert await outbox.replay(all_dead=True) == 3
    await run_due(dispatcher)
    assert [r.event_id for r in receiver.accepted] == [
        d.event_id for d in dead if d.conversation == "anna"
    ] + [d.event_id for d in dead if d.conversation == "ben"]
    assert by_conversation(receiver.accepted) == {"anna": [0, 1, 2], "ben": [0, 1, 2]}
    assert {r.attempt for r in receiver.accepted} == {1}
    assert await outbox.dead() == []
    assert await outbox.replay(all_dead=True) == 0


async def test_a_dead_event_is_skipped_and_its_conversation_goes_on_in_order(
    outbox: Outbox,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
    webhook_settings: WebhookSettings,
) -> None:
    await subscribe(outbox, handshake_http)
    receiver.down = True
    dispatcher = make_dispatcher()
    await enqueue(outbox, db, "anna", 0)
    await run_due(dispatcher)
    clock.advance(seconds=webhook_settings.give_up_s - 60)
    await enqueue(outbox, db, "anna", 1)
    await enqueue(outbox, db, "anna", 2)
    while clock.now_ms() < rows_made(await rows(db)) + webhook_settings.give_up_s * 1000:
        await run_after(dispatcher, clock, seconds=webhook_settings.retry_max_s / 2)
    assert [r.state for r in await rows(db)] == ["dead", "pending", "pending"]

    receiver.down = False
    await run_after(dispatcher, clock, seconds=webhook_settings.retry_max_s)
    assert [r.value["seq"] for r in receiver.accepted] == [1, 2]
    assert [r.state for r in await rows(db)] == ["dead", "delivered", "delivered"]


async def test_a_replay_into_a_waiting_conversation_goes_first_and_wakes_the_rest(
    outbox: Outbox,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
    webhook_settings: WebhookSettings,
) -> None:
    await subscribe(outbox, handshake_http)
    receiver.down = True
    dispatcher = make_dispatcher()
    await enqueue(outbox, db, "anna", 0)
    await run_due(dispatcher)
    clock.advance(seconds=webhook_settings.give_up_s - 30)
    await enqueue(outbox, db, "anna", 1)
    await enqueue(outbox, db, "anna", 2)
    for _ in range(10):
        await run_after(dispatcher, clock, seconds=10)
    first, second, third = await rows(db)
    assert first.state == "dead"
    assert (second.state, third.state) == ("pending", "pending")
    assert second.next_attempt_ms > clock.now_ms()  # the conversation waits for its retry

    receiver.down = False
    assert await outbox.replay([first.event_id]) == 1
    dispatcher.wake()
    await dispatcher.settle()  # no time passes: the replay made the conversation due
    assert [r.value["seq"] for r in receiver.accepted] == [0, 1, 2]
    assert {r.state for r in await rows(db)} == {"delivered"}


def rows_made(stored: list[Any]) -> int:
    return int(stored[0].created_ms)


async def test_conversations_go_in_parallel_up_to_concurrency(
    db: Database,
    key: bytes,
    clock: ManualClock,
    receiver: Receiver,
    handshake_http: httpx.AsyncClient,
) -> None:
    outbox = Outbox(db, key, clock, WebhookSettings(concurrency=3))
    await subscribe(outbox, handshake_http)
    for c in range(8):
        await enqueue(outbox, db, f"c{c}", 0)
        await enqueue(outbox, db, f"c{c}", 1)
    receiver.hold = asyncio.Event()
    dispatcher = WebhookDispatcher(outbox, transport=receiver.transport)
    dispatcher.start()
    try:
        dispatcher.wake()
        while receiver.in_flight < 3:
            receiver.arrived.clear()
            await asyncio.wait_for(receiver.arrived.wait(), 10)
        receiver.hold.set()
        await dispatcher.settle()
    finally:
        await dispatcher.close()
    assert receiver.most_in_flight == 3
    assert by_conversation(receiver.accepted) == {f"c{c}": [0, 1] for c in range(8)}


async def test_events_of_a_removed_subscription_are_not_sent(
    outbox: Outbox,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
) -> None:
    await subscribe(outbox, handshake_http)
    other = await subscribe(outbox, handshake_http, "https://crm.example/", "crm-secret")
    await enqueue(outbox, db, "c1", 1)
    receiver.status = 503
    dispatcher = make_dispatcher()
    await run_due(dispatcher)
    assert len(receiver.requests) == 2

    await outbox.remove(other.url)
    receiver.status = 200
    await run_after(dispatcher, clock, seconds=2)
    assert len(receiver.accepted) == 1
    assert [r.state for r in await rows(db)] == ["delivered", "dead"]


async def test_a_subscription_added_by_another_process_is_served(
    outbox: Outbox,
    db: Database,
    key: bytes,
    clock: ManualClock,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
    webhook_settings: WebhookSettings,
) -> None:
    dispatcher = make_dispatcher()
    await dispatcher.settle()
    cli = Outbox(db, key, clock, webhook_settings)
    await subscribe(cli, handshake_http)
    await enqueue(cli, db, "c1", 1)  # as if the gateway's cache had caught up
    await run_due(dispatcher)
    assert [r.value["seq"] for r in receiver.accepted] == [1]


async def test_a_restart_sends_what_was_in_flight_again(
    outbox: Outbox,
    db: Database,
    receiver: Receiver,
    handshake_http: httpx.AsyncClient,
) -> None:
    await subscribe(outbox, handshake_http)
    await enqueue(outbox, db, "c1", 1)
    receiver.hold = asyncio.Event()
    first = WebhookDispatcher(outbox, transport=receiver.transport)
    first.start()
    first.wake()
    await asyncio.wait_for(receiver.arrived.wait(), 10)
    await first.close()  # stopped mid-POST: no answer, no outcome

    receiver.hold = None
    second = WebhookDispatcher(outbox, transport=receiver.transport)
    second.start()
    try:
        await second.settle()
    finally:
        await second.close()
    (got,) = receiver.accepted
    (row,) = await rows(db)
    assert got.event_id == row.event_id
    assert row.state == "delivered"


async def test_logs_name_the_receiver_and_the_error_never_the_body(
    outbox: Outbox,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
    info_logs: None,
) -> None:
    await subscribe(outbox, handshake_http)
    await enqueue(outbox, db, "c1", 1)
    dispatcher = make_dispatcher()
    with capture_logs() as logs:
        receiver.status = 503
        await run_due(dispatcher)
        receiver.status = 200
        await run_after(dispatcher, clock, seconds=2)
    events = [entry["event"] for entry in logs]
    assert "webhook receiver failing; retrying with backoff" in events
    assert "webhook receiver answers again" in events
    assert any(entry.get("error") == "HTTP 503" for entry in logs)
    assert "Nachricht" not in json.dumps(logs, default=str)


async def test_old_delivered_events_are_pruned_and_pending_ones_kept(
    outbox: Outbox,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
) -> None:
    await subscribe(outbox, handshake_http)
    await enqueue(outbox, db, "anna", 0)
    await enqueue(outbox, db, "ben", 0)
    dispatcher = make_dispatcher()
    receiver.status = 200
    await run_due(dispatcher)
    clock.advance(hours=2)
    receiver.down = True
    await enqueue(outbox, db, "anna", 1)
    await run_due(dispatcher)

    assert await outbox.prune(3 * 3600) == 0
    assert await outbox.prune(3600) == 2
    assert [(r.value["conversation"], r.state) for r in await decoded(db)] == [("anna", "pending")]


async def decoded(db: Database) -> list[Any]:
    class Row:
        def __init__(self, row: Any) -> None:
            self.state = row.state
            self.value = json.loads(row.body)["entry"][0]["changes"][0]["value"]

    return [Row(r) for r in await rows(db)]


async def test_wake_is_safe_from_another_thread(
    outbox: Outbox,
    db: Database,
    receiver: Receiver,
    make_dispatcher: Any,
    handshake_http: httpx.AsyncClient,
    webhook_settings: WebhookSettings,
) -> None:
    await subscribe(outbox, handshake_http)
    dispatcher = make_dispatcher()
    await dispatcher.settle()
    await enqueue(outbox, db, "c1", 1)
    receiver.arrived.clear()
    await asyncio.to_thread(dispatcher.wake)  # as the gateway's recorder thread does
    # Well before poll_s: only the wake-up can have sent it.
    await asyncio.wait_for(receiver.arrived.wait(), webhook_settings.poll_s / 2)
    await dispatcher.settle()
    assert [r.value["seq"] for r in receiver.accepted] == [1]


async def test_close_stops_the_dispatcher_woken_at_the_same_moment(
    outbox: Outbox, receiver: Receiver
) -> None:
    """A gateway that stops as a message is recorded closes its dispatcher while a wake-up is
    on its way: whichever turn of the event loop the two meet in, the dispatcher stops."""
    for turns in range(8):
        dispatcher = WebhookDispatcher(outbox, transport=receiver.transport)
        dispatcher.start()
        await dispatcher.settle()
        dispatcher.wake()
        for _ in range(turns):
            await asyncio.sleep(0)
        closing = asyncio.create_task(dispatcher.close())
        done, _ = await asyncio.wait({closing}, timeout=10)
        assert done, f"the dispatcher kept running (woken {turns} turns before it was closed)"

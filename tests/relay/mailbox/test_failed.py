"""Messages that expire before any device of their recipient received them are reported back
to the sender as ``failed`` (131026) when the relay purges them, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from support import (
    Device,
    MakeRelay,
    RunningRelay,
    WsClient,
    publish_identity,
    receiving_device,
    send_frame,
    stored_envelopes,
)

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.relay.mailbox.service import Purged
from tresen.wire import relay as wire

HOUR_S = 3600
TTL = {"envelope_ttl_s": HOUR_S, "purge_interval_s": 60}


async def send_ok(client: WsClient, frame: wire.Send) -> wire.Accepted:
    await client.send(frame)
    accepted: wire.Accepted = await client.expect(wire.Accepted)
    return accepted


def reports(client: WsClient) -> list[wire.ServerFrame]:
    """The failed reports a connection received and the test did not take yet."""
    return [f for f in client.backlog if isinstance(f, wire.Failed)]


async def pending(relay: RunningRelay, device: Device) -> list[dict[str, Any]]:
    r = await relay.http.get("/v1/messages", headers=device.auth)
    assert r.status_code == 200, r.text
    envelopes: list[dict[str, Any]] = r.json()["envelopes"]
    return envelopes


async def test_a_message_nobody_received_is_reported_failed_to_every_sender_device(
    make_relay: MakeRelay,
) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, limits=TTL) as relay:
        alice = await receiving_device(relay)
        tablet = await relay.register(alice.phone)  # no identity keys: still hears of it
        bob = await receiving_device(relay)  # never connects
        a = await relay.connect(alice)
        await a.expect(wire.QueueEmpty)
        accepted = await send_ok(a, send_frame(bob, "lost", {1: b"hello?"}))

        clock.advance(minutes=59)
        assert await relay.ctx.mailbox.purge_expired() == Purged()
        clock.advance(minutes=1)  # exactly its hour: expired
        assert await relay.ctx.mailbox.purge_expired() == Purged(1, 1, 1)

        failed = await a.expect(wire.Failed)
        assert failed.message_id == accepted.message_id
        assert failed.recipient == bob.account_id
        assert failed.code == ErrorCode.UNDELIVERABLE == 131026
        assert failed.reason == "expired before delivery"
        assert failed.server_ms == clock.now_ms()
        # The device that was not connected finds it over HTTP, with the same facts.
        [envelope] = await pending(relay, tablet)
        assert envelope["kind"] == "failed"
        assert envelope["message_id"] == accepted.message_id
        assert envelope["peer"] == bob.account_id
        assert (envelope["code"], envelope["reason"]) == (131026, "expired before delivery")
        assert (envelope["body"], envelope["pricing"]) == (None, None)
        r = await relay.http.post(
            "/v1/messages/ack", json={"ids": [envelope["id"]]}, headers=tablet.auth
        )
        assert r.json() == {"deleted": 1}

        # Acked like delivered and read: gone, and not sent again on the next connection.
        await a.send(wire.Ack(ids=[failed.id]))
        await a.send(wire.Ping(nonce=1))
        await a.expect(wire.Pong)
        await a.close()
        assert await stored_envelopes(relay) == 0
        again = await relay.connect(alice)
        await again.expect(wire.QueueEmpty)
        assert not reports(again)
        # Purging again finds nothing more to report.
        assert await relay.ctx.mailbox.purge_expired() == Purged()
        # The recipient, connecting late, gets nothing.
        b = await relay.connect(bob)
        await b.expect(wire.QueueEmpty)
        assert not any(isinstance(f, wire.MessageFrame) for f in b.backlog)
        await again.close()
        await b.close()


async def test_a_message_one_device_received_is_never_failed(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, limits=TTL) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        bob_tablet = await relay.register(bob.phone)
        await publish_identity(relay, bob_tablet)  # never connects: its copy expires
        a = await relay.connect(alice)
        accepted = await send_ok(a, send_frame(bob, "m", {1: b"one", 2: b"two"}))
        b = await relay.connect(bob)
        message = await b.expect(wire.MessageFrame)
        await b.send(wire.Ack(ids=[message.id]))
        delivered = await a.expect(wire.Delivered)
        assert delivered.message_id == accepted.message_id
        await a.send(wire.Ack(ids=[delivered.id]))
        await b.close()

        clock.advance(hours=2)
        assert await relay.ctx.mailbox.purge_expired() == Purged(1, 1, 0)
        await a.send(wire.Ping(nonce=2))
        await a.expect(wire.Pong)
        assert not reports(a)
        assert await stored_envelopes(relay) == 0
        await a.close()


async def test_a_message_read_but_never_acked_is_not_failed(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, limits=TTL) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        accepted = await send_ok(a, send_frame(bob, "m", {1: b"x"}))
        b = await relay.connect(bob)
        await b.expect(wire.MessageFrame)
        await b.send(wire.Receipt(message_ids=[accepted.message_id]))  # but no ack
        await a.expect(wire.Read)
        await b.close()
        clock.advance(hours=2)
        purged = await relay.ctx.mailbox.purge_expired()
        assert (purged.messages, purged.failed) == (1, 0)
        await a.close()


async def test_receipts_system_messages_and_own_copies_are_never_reported(
    make_relay: MakeRelay,
) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, limits=TTL) as relay:
        alice = await receiving_device(relay)
        laptop = await relay.register(alice.phone)
        await publish_identity(relay, laptop)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        for n, klass in enumerate((wire.MessageClass.RECEIPT, wire.MessageClass.SYSTEM)):
            await send_ok(a, send_frame(bob, f"k{n}", {1: b"x"}, klass=klass))
        await send_ok(a, send_frame(alice, "own", {laptop.device_id: b"x"}))
        clock.advance(hours=2)
        assert await relay.ctx.mailbox.purge_expired() == Purged(3, 3, 0)
        await a.close()


async def test_the_purge_runs_each_interval_by_the_relays_clock(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, limits=TTL) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        await send_ok(a, send_frame(bob, "m", {1: b"x"}))
        mailbox = relay.ctx.mailbox
        clock.advance(seconds=59)
        assert await mailbox.purge_if_due() is None  # not yet a minute since the start
        clock.advance(seconds=1)
        assert await mailbox.purge_if_due() == Purged()  # due, but nothing has expired
        clock.advance(minutes=59, seconds=59)
        assert await mailbox.purge_if_due() == Purged(1, 1, 1)
        assert await mailbox.purge_if_due() is None  # the next is a minute away again
        assert (await a.expect(wire.Failed)).code == 131026
        await a.close()


async def test_a_large_backlog_is_purged_in_several_transactions(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, limits=TTL) as relay:
        relay.ctx.mailbox.purge_chunk = 2
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        sent = {
            (await send_ok(a, send_frame(bob, f"m{i}", {1: b"x"}))).message_id for i in range(5)
        }
        clock.advance(hours=1)
        assert await relay.ctx.mailbox.purge_expired() == Purged(5, 5, 5)
        reported = {(await a.expect(wire.Failed)).message_id for _ in range(5)}
        assert reported == sent
        await a.close()

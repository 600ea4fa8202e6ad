"""Store-and-forward delivery over the WebSocket, on SQLite and PostgreSQL."""

from __future__ import annotations

import os

from support import (
    Backend,
    MakeRelay,
    RunningRelay,
    WsClient,
    receiving_device,
    send_frame,
    stored_envelopes,
)

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.relay.context import build_context
from tresen.wire import relay as wire


async def send_ok(client: WsClient, frame: wire.Send) -> wire.Accepted:
    await client.send(frame)
    accepted = await client.expect(wire.Accepted)
    assert accepted.client_msg_id == frame.client_msg_id
    return accepted


async def send_err(client: WsClient, frame: wire.Frame) -> wire.ErrorFrame:
    await client.send(frame)
    return await client.expect(wire.ErrorFrame)


async def test_message_is_delivered_and_sender_learns_it(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    a = await relay.connect(alice)
    b = await relay.connect(bob)
    await b.expect(wire.QueueEmpty)

    accepted = await send_ok(a, send_frame(bob, "m1", {1: b"\x01ciphertext"}))
    assert accepted.duplicate is False

    message = await b.expect(wire.MessageFrame)
    assert message.message_id == accepted.message_id
    assert message.sender == alice.account_id
    assert message.sender_device == alice.device_id
    assert message.body == b"\x01ciphertext"
    assert message.klass is wire.MessageClass.SESSION
    assert message.server_ms == accepted.server_ms

    await b.send(wire.Ack(ids=[message.id]))
    delivered = await a.expect(wire.Delivered)
    assert delivered.message_id == accepted.message_id
    assert delivered.recipient == bob.account_id
    assert delivered.recipient_device == bob.device_id
    await a.send(wire.Ack(ids=[delivered.id]))
    await a.send(wire.Ping(nonce=7))
    assert (await a.expect(wire.Pong)).nonce == 7

    assert await stored_envelopes(relay) == 0
    await a.close()
    await b.close()


async def test_order_survives_disconnects_without_duplicates(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    a = await relay.connect(alice)
    sent: list[str] = []

    async def send_batch(start: int, count: int) -> None:
        for i in range(start, start + count):
            accepted = await send_ok(a, send_frame(bob, f"m{i}", {1: f"c{i}".encode()}))
            sent.append(accepted.message_id)

    await send_batch(0, 20)
    seen_by_app: list[str] = []  # what the application sees after de-duplication by id
    frames_seen = 0
    for session in range(4):
        b = await relay.connect(bob)
        # Take some of the queue, acknowledge only part of it, then drop the connection.
        for i in range(8):
            frame = await b.expect(wire.MessageFrame)
            frames_seen += 1
            if frame.message_id not in seen_by_app:
                seen_by_app.append(frame.message_id)
            if i < 5:
                await b.send(wire.Ack(ids=[frame.id]))
        await b.send(wire.Ping(nonce=session))
        await b.expect(wire.Pong)  # acks before the ping are processed
        await b.close()
        await send_batch(20 + session * 3, 3)

    b = await relay.connect(bob)
    while len(seen_by_app) < len(sent):
        frame = await b.expect(wire.MessageFrame)
        if frame.message_id not in seen_by_app:
            seen_by_app.append(frame.message_id)
        await b.send(wire.Ack(ids=[frame.id]))
    await b.expect(wire.QueueEmpty)
    assert seen_by_app == sent
    # Only what was delivered but not acknowledged came again: 3 per dropped connection.
    assert frames_seen == 4 * 8
    await b.send(wire.Ping())
    await b.expect(wire.Pong)
    a_pending = await relay.ctx.mailbox.pending(await _device_pk(relay, bob))
    assert a_pending == []
    await a.close()
    await b.close()


async def _device_pk(relay: RunningRelay, device: object) -> int:
    principal = await relay.ctx.accounts.authenticate(device.token)  # type: ignore[attr-defined]
    return principal.device_pk


async def test_backlog_comes_before_new_traffic(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    a = await relay.connect(alice)
    for i in range(5):
        await send_ok(a, send_frame(bob, f"old{i}", {1: b"x"}))
    b = await relay.connect(bob)
    await send_ok(a, send_frame(bob, "new", {1: b"y"}))
    bodies = []
    for _ in range(6):
        frame = await b.expect(wire.MessageFrame)
        bodies.append(frame.body)
    assert bodies == [b"x"] * 5 + [b"y"]
    await a.close()
    await b.close()


async def test_every_device_of_the_recipient_gets_its_own_copy(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    alice_laptop = await receiving_device(relay, alice.phone)
    bob = await receiving_device(relay)
    bob_laptop = await receiving_device(relay, bob.phone)
    assert bob_laptop.account_id == bob.account_id
    assert bob_laptop.device_id == 2

    a1 = await relay.connect(alice)
    a2 = await relay.connect(alice_laptop)
    accepted = await send_ok(a1, send_frame(bob, "m", {1: b"for-1", 2: b"for-2"}))
    b1 = await relay.connect(bob)
    b2 = await relay.connect(bob_laptop)
    m1 = await b1.expect(wire.MessageFrame)
    m2 = await b2.expect(wire.MessageFrame)
    assert (m1.body, m2.body) == (b"for-1", b"for-2")
    assert m1.message_id == m2.message_id == accepted.message_id
    await b1.send(wire.Ack(ids=[m1.id]))
    await b2.send(wire.Ack(ids=[m2.id]))
    # Both of Alice's devices learn of the delivery, once per message.
    for client in (a1, a2):
        delivered = await client.expect(wire.Delivered)
        assert delivered.message_id == accepted.message_id
        await client.send(wire.Ack(ids=[delivered.id]))
        await client.send(wire.Ping())
        await client.expect(wire.Pong)
    assert await stored_envelopes(relay) == 0

    # A copy to one's own other devices never includes the sending device.
    own = await send_ok(a1, send_frame(alice, "sync", {2: b"copy"}))
    copy = await a2.expect(wire.MessageFrame)
    assert copy.message_id == own.message_id
    for c in (a1, a2, b1, b2):
        await c.close()


async def test_device_list_mismatch_names_missing_extra_and_stale(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    await receiving_device(relay, bob.phone)
    await relay.register(bob.phone)  # a third device without keys is not (yet) a recipient
    a = await relay.connect(alice)

    error = await send_err(a, send_frame(bob, "m", {1: b"x", 7: b"y"}))
    assert error.code == ErrorCode.DEVICE_MISMATCH
    assert error.client_msg_id == "m"
    assert error.details == {"missing": [2], "extra": [7], "stale": []}

    devices = (await relay.http.get("/v1/devices", headers=bob.auth)).json()
    registration = {d["device_id"]: d["registration_id"] for d in devices}
    frame = wire.Send(
        client_msg_id="m2",
        to=bob.account_id,
        per_device=[
            wire.DeviceCiphertext(device_id=1, type=1, body=b"x", registration_id=registration[1]),
            wire.DeviceCiphertext(
                device_id=2, type=1, body=b"y", registration_id=registration[2] + 1
            ),
        ],
    )
    error = await send_err(a, frame)
    assert error.details == {"missing": [], "extra": [], "stale": [2]}
    assert await stored_envelopes(relay) == 0
    await a.close()


async def test_resend_with_the_same_client_id_is_stored_once(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    a = await relay.connect(alice)
    first = await send_ok(a, send_frame(bob, "same", {1: b"x"}))
    again = await send_ok(a, send_frame(bob, "same", {1: b"x"}))
    assert again.duplicate is True
    assert (again.message_id, again.server_ms) == (first.message_id, first.server_ms)
    b = await relay.connect(bob)
    await b.expect(wire.MessageFrame)
    await b.expect(wire.QueueEmpty)
    assert await stored_envelopes(relay) == 1
    await a.close()
    await b.close()


async def test_unknown_recipient_is_undeliverable(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    a = await relay.connect(alice)
    frame = wire.Send(
        client_msg_id="m",
        to="0" * 32,
        per_device=[wire.DeviceCiphertext(device_id=1, type=0, body=b"x")],
    )
    error = await send_err(a, frame)
    assert error.code == ErrorCode.UNDELIVERABLE
    await a.close()


async def test_expired_envelopes_are_never_delivered(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, limits={"envelope_ttl_s": 3600}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        await send_ok(a, send_frame(bob, "old", {1: b"old"}))
        clock.advance(minutes=59)
        await send_ok(a, send_frame(bob, "young", {1: b"young"}))
        clock.advance(minutes=2)  # "old" is now 61 minutes old, past its hour

        b = await relay.connect(bob)
        frame = await b.expect(wire.MessageFrame)
        assert frame.body == b"young"
        await b.expect(wire.QueueEmpty)
        # "old" is gone; its sender is told that it failed (test_failed.py).
        purged = await relay.ctx.mailbox.purge_expired()
        assert (purged.envelopes, purged.messages, purged.failed) == (1, 1, 1)
        assert await stored_envelopes(relay) == 2  # "young", and the report to alice
        await a.close()
        await b.close()


async def test_rejected_frames_get_errors_and_the_connection_lives_on(
    make_relay: MakeRelay,
) -> None:
    async with make_relay(limits={"max_frame_bytes": 4096}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)

        await a.send_raw("a text frame")
        assert (await a.expect(wire.ErrorFrame)).code == ErrorCode.INVALID_PARAMETER
        await a.send_raw(b"\xc1\xff garbage")
        assert (await a.expect(wire.ErrorFrame)).code == ErrorCode.INVALID_PARAMETER
        await a.send_raw(b"\x81\xa1t\xa7unknown")
        assert (await a.expect(wire.ErrorFrame)).code == ErrorCode.INVALID_PARAMETER
        await a.send_raw(b"\x82\xa1t\xa4ping\xa1v\x09")
        error = await a.expect(wire.ErrorFrame)
        assert error.code == ErrorCode.UNSUPPORTED_VERSION
        assert error.details["supported"] == [1]
        await a.send_raw(wire.encode(wire.Ack(ids=[1])).replace(b"ids", b"idz"))
        assert (await a.expect(wire.ErrorFrame)).code == ErrorCode.INVALID_PARAMETER

        big = send_frame(bob, "big", {1: os.urandom(8000)})
        error = await send_err(a, big)
        assert error.code == ErrorCode.FRAME_TOO_LARGE
        assert error.details["max_bytes"] == 4096

        empty = send_frame(bob, "empty", {1: b""})
        assert (await send_err(a, empty)).code == ErrorCode.INVALID_PARAMETER
        twice = wire.Send(
            client_msg_id="twice",
            to=bob.account_id,
            per_device=[
                wire.DeviceCiphertext(device_id=1, type=1, body=b"a"),
                wire.DeviceCiphertext(device_id=1, type=1, body=b"b"),
            ],
        )
        assert (await send_err(a, twice)).code == ErrorCode.INVALID_PARAMETER

        # After all of that the connection still works and nothing was stored.
        await send_ok(a, send_frame(bob, "fine", {1: b"ok"}))
        assert await stored_envelopes(relay) == 1
        await a.close()


async def test_unauthenticated_socket_is_refused(relay: RunningRelay) -> None:
    import websockets

    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        async with websockets.connect(relay.ws_url, additional_headers=headers) as ws:
            frame = wire.decode_server_frame(await ws.recv())  # type: ignore[arg-type]
            assert isinstance(frame, wire.ErrorFrame)
            assert frame.code == ErrorCode.INVALID_TOKEN
            await ws.wait_closed()
            assert ws.close_code == 4401
    # The relay is still serving.
    assert (await relay.http.get("/v1/health")).status_code == 200


async def test_full_queue_rejects_further_sends(make_relay: MakeRelay) -> None:
    async with make_relay(limits={"max_queue_per_device": 3}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        for i in range(3):
            await send_ok(a, send_frame(bob, f"m{i}", {1: b"x"}))
        error = await send_err(a, send_frame(bob, "m3", {1: b"x"}))
        assert error.code == ErrorCode.QUEUE_FULL
        assert error.details == {"device_id": 1, "max_queue": 3}
        await a.close()


async def test_sending_too_fast_is_limited_per_device(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(
        clock=clock, limits={"send_rate_per_device": 1, "send_burst_per_device": 3}
    ) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        for i in range(3):
            await send_ok(a, send_frame(bob, f"m{i}", {1: b"x"}))
        error = await send_err(a, send_frame(bob, "m3", {1: b"x"}))
        assert error.code == ErrorCode.THROUGHPUT_REACHED
        assert 0 < error.details["retry_after_ms"] <= 1001
        clock.advance(seconds=1)
        await send_ok(a, send_frame(bob, "m3", {1: b"x"}))
        await a.close()


async def test_read_receipts_reach_every_sender_device_once(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    mallory = await receiving_device(relay)
    a = await relay.connect(alice)
    accepted = await send_ok(a, send_frame(bob, "m", {1: b"x"}))

    m = await relay.connect(mallory)
    await m.send(wire.Receipt(message_ids=[accepted.message_id]))  # not addressed to Mallory
    b = await relay.connect(bob)
    frame = await b.expect(wire.MessageFrame)
    await b.send(wire.Ack(ids=[frame.id]))
    await b.send(wire.Receipt(message_ids=[accepted.message_id]))
    await b.send(wire.Receipt(message_ids=[accepted.message_id]))
    delivered = await a.expect(wire.Delivered)
    read = await a.expect(wire.Read)
    assert read.message_id == accepted.message_id
    assert read.recipient == bob.account_id
    await a.send(wire.Ack(ids=[delivered.id, read.id]))
    await a.send(wire.Ping())
    await a.expect(wire.Pong)
    assert await stored_envelopes(relay) == 0
    for c in (a, b, m):
        await c.close()


async def test_a_new_connection_displaces_the_old(relay: RunningRelay) -> None:
    import websockets

    bob = await receiving_device(relay)
    first = await relay.connect(bob)
    second = await relay.connect(bob)
    try:
        while True:
            await first.recv(timeout=5)
    except websockets.ConnectionClosed:
        pass
    assert first.ws.close_code == 4409
    await second.send(wire.Ping())
    await second.expect(wire.Pong)
    await second.close()


async def test_entries_stored_by_another_relay_process_are_delivered(
    make_relay: MakeRelay, backend: Backend
) -> None:
    async with make_relay(limits={"delivery_poll_s": 0.2}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        b = await relay.connect(bob)
        await b.expect(wire.QueueEmpty)

        # A second relay over the same database, with its own (empty) set of connections.
        other = build_context(relay.ctx.settings, db=backend.database())
        await other.mailbox.start()
        try:
            sender = await other.accounts.authenticate(alice.token)
            accepted = await other.mailbox.send(sender, send_frame(bob, "elsewhere", {1: b"z"}))
        finally:
            await other.close()
        frame = await b.expect(wire.MessageFrame)
        assert frame.message_id == accepted.message_id
        await b.close()


async def test_a_strangers_receipt_in_the_same_batch_does_not_shadow_the_recipients(
    relay: RunningRelay,
) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    mallory = await receiving_device(relay)
    a = await relay.connect(alice)
    accepted = await send_ok(a, send_frame(bob, "m", {1: b"x"}))
    accounts = relay.ctx.accounts
    stranger = await accounts.authenticate(mallory.token)
    recipient = await accounts.authenticate(bob.token)
    # Both are queued before the writer runs, so they share one transaction.
    by_stranger = relay.ctx.mailbox.submit_read(stranger, [accepted.message_id])
    by_recipient = relay.ctx.mailbox.submit_read(recipient, [accepted.message_id])
    assert (await by_stranger, await by_recipient) == (0, 1)
    read = await a.expect(wire.Read)
    assert read.recipient == bob.account_id
    await a.close()


async def test_acks_in_one_batch_are_each_counted_once(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    a = await relay.connect(alice)
    for i in range(3):
        await send_ok(a, send_frame(bob, f"m{i}", {1: b"x"}))
    device = await relay.ctx.accounts.authenticate(bob.token)
    seqs = [e.seq for e in await relay.ctx.mailbox.pending(device.device_pk)]
    first = relay.ctx.mailbox.submit_ack(device, seqs[:2])
    second = relay.ctx.mailbox.submit_ack(device, seqs[1:])
    assert (await first, await second) == (2, 1)
    await a.close()


async def test_a_device_acks_only_its_own_envelopes_in_a_shared_batch(
    relay: RunningRelay,
) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    carol = await receiving_device(relay)
    a = await relay.connect(alice)
    await send_ok(a, send_frame(bob, "to-bob", {1: b"x"}))
    await send_ok(a, send_frame(carol, "to-carol", {1: b"y"}))
    accounts, mailbox = relay.ctx.accounts, relay.ctx.mailbox
    bob_device = await accounts.authenticate(bob.token)
    carol_device = await accounts.authenticate(carol.token)
    (bobs,) = [e.seq for e in await mailbox.pending(bob_device.device_pk)]
    (carols,) = [e.seq for e in await mailbox.pending(carol_device.device_pk)]
    # One batch: Bob names Carol's envelope besides his own, Carol names only Bob's.
    by_bob = mailbox.submit_ack(bob_device, [bobs, carols])
    by_carol = mailbox.submit_ack(carol_device, [bobs])
    assert (await by_bob, await by_carol) == (1, 0)
    assert [e.seq for e in await mailbox.pending(carol_device.device_pk)] == [carols]
    await a.close()


async def test_removing_a_device_closes_its_connection(relay: RunningRelay) -> None:
    import websockets

    alice = await receiving_device(relay)
    laptop = await receiving_device(relay, alice.phone)
    connection = await relay.connect(laptop)
    r = await relay.http.delete(f"/v1/devices/{laptop.device_id}", headers=alice.auth)
    assert r.status_code == 204
    try:
        while True:
            await connection.recv(timeout=5)
    except websockets.ConnectionClosed:
        pass
    assert connection.ws.close_code == 1008


async def test_a_suspended_business_cannot_send(relay: RunningRelay) -> None:
    from sqlalchemy import insert

    from tresen.relay.schema import business_profiles

    shop = await receiving_device(relay)
    customer = await receiving_device(relay)
    async with relay.ctx.db.write() as conn:
        await conn.execute(
            insert(business_profiles).values(
                account_id=shop.account_id,
                display_name="Shop",
                name_skeleton="shop",
                created_ms=1,
                updated_ms=1,
                suspended_ms=1,
                suspend_reason="spam",
            )
        )
    s = await relay.connect(shop)
    error = await send_err(s, send_frame(customer, "m", {1: b"x"}))
    assert error.code == ErrorCode.ACCOUNT_RESTRICTED
    assert await stored_envelopes(relay) == 0
    # The customer can still write to the business.
    c = await relay.connect(customer)
    await send_ok(c, send_frame(shop, "hi", {1: b"y"}))
    await s.close()
    await c.close()


async def test_a_browser_offers_its_token_as_a_subprotocol(relay: RunningRelay) -> None:
    import websockets

    device = await receiving_device(relay)
    offered = ["tresen.v1", f"tresen.bearer.{device.token}"]
    async with websockets.connect(relay.ws_url, subprotocols=offered) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "tresen.v1"
        hello = wire.decode_server_frame(await ws.recv())  # type: ignore[arg-type]
        assert isinstance(hello, wire.Hello)
        assert (hello.account_id, hello.device_id) == (device.account_id, device.device_id)
    wrong = ["tresen.v1", "tresen.bearer.not-a-token"]
    async with websockets.connect(relay.ws_url, subprotocols=wrong) as ws:  # type: ignore[arg-type]
        frame = wire.decode_server_frame(await ws.recv())  # type: ignore[arg-type]
        assert isinstance(frame, wire.ErrorFrame)
        assert frame.code == ErrorCode.INVALID_TOKEN
        await ws.wait_closed()
        assert ws.close_code == 4401

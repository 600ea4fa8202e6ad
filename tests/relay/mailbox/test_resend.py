"""Sessions heal: a device acks a copy it cannot decrypt as undecryptable (no ``delivered``),
and a device of the sender resends the message to it alone (``resend`` → ``resent``), on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import msgspec
from support import (
    Device,
    MakeRelay,
    RunningRelay,
    WsClient,
    receiving_device,
    send_frame,
    stored_envelopes,
)

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode, TresenError
from tresen.relay.mailbox.service import AcceptedResend, AcceptedSend
from tresen.wire import relay as wire

HOUR_S = 3600
UNKNOWN_ID = "0" * 32


async def send_ok(client: WsClient, frame: wire.Send) -> wire.Accepted:
    await client.send(frame)
    accepted: wire.Accepted = await client.expect(wire.Accepted)
    assert accepted.client_msg_id == frame.client_msg_id
    return accepted


def resend_frame(
    message_id: str,
    device_id: int,
    body: bytes = b"\x02again",
    client_msg_id: str = "r1",
    **kw: Any,
) -> wire.Resend:
    return wire.Resend(
        client_msg_id=client_msg_id,
        message_id=message_id,
        device_id=device_id,
        type=0,
        body=body,
        **kw,
    )


async def resend_ok(client: WsClient, frame: wire.Resend) -> wire.Resent:
    await client.send(frame)
    resent: wire.Resent = await client.expect(wire.Resent)
    assert resent.client_msg_id == frame.client_msg_id
    return resent


async def refused(client: WsClient, frame: wire.Frame) -> wire.ErrorFrame:
    await client.send(frame)
    error: wire.ErrorFrame = await client.expect(wire.ErrorFrame)
    return error


async def settled(client: WsClient) -> None:
    """Everything this connection sent before is committed (answers come in frame order)."""
    await client.send(wire.Ping(nonce=99))
    await client.expect(wire.Pong)


async def pending(relay: RunningRelay, device: Device) -> list[dict[str, Any]]:
    """What waits in ``device``'s mailbox (over HTTP, so nothing is taken from a socket)."""
    r = await relay.http.get("/v1/messages", headers=device.auth)
    assert r.status_code == 200, r.text
    envelopes: list[dict[str, Any]] = r.json()["envelopes"]
    return envelopes


async def test_an_undecryptable_copy_is_deleted_but_not_reported_delivered(
    relay: RunningRelay,
) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    a = await relay.connect(alice)
    b = await relay.connect(bob)
    await send_ok(a, send_frame(bob, "m1", {1: b"\x01broken"}))
    message = await b.expect(wire.MessageFrame)

    await b.send(wire.Ack(ids=[message.id], undecryptable=[message.id]))
    await settled(b)

    # Gone from Bob's mailbox, and Alice has no delivered event waiting (nor anything else).
    assert await stored_envelopes(relay) == 0
    assert await pending(relay, alice) == []
    assert [f for f in a.backlog if isinstance(f, wire.Delivered)] == []
    b2 = await relay.connect(bob)
    await b2.expect(wire.QueueEmpty)
    assert [f for f in b2.backlog if isinstance(f, wire.MessageFrame)] == []
    for client in (a, b, b2):
        await client.close()


async def test_undecryptable_ids_must_be_acked_in_the_same_frame(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    a = await relay.connect(alice)
    b = await relay.connect(bob)
    await send_ok(a, send_frame(bob, "m1", {1: b"\x01c1"}))
    await send_ok(a, send_frame(bob, "m2", {1: b"\x01c2"}))
    first = await b.expect(wire.MessageFrame)
    second = await b.expect(wire.MessageFrame)

    error = await refused(b, wire.Ack(ids=[first.id], undecryptable=[second.id]))
    assert error.code == ErrorCode.INVALID_PARAMETER
    assert error.details == {"field": "undecryptable", "ids": [second.id]}
    # Nothing was deleted.
    assert [e["id"] for e in await pending(relay, bob)] == [first.id, second.id]
    await a.close()
    await b.close()


async def test_a_resent_copy_takes_the_place_of_the_original_and_counts_as_delivery(
    make_relay: MakeRelay,
) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        alice = await receiving_device(relay)
        alice_laptop = await receiving_device(relay, alice.phone)
        bob = await receiving_device(relay)
        bob_laptop = await receiving_device(relay, bob.phone)
        a1, a2 = await relay.connect(alice), await relay.connect(alice_laptop)
        b1 = await relay.connect(bob)
        accepted = await send_ok(a1, send_frame(bob, "m1", {1: b"\x01lost", 2: b"\x01fine"}))
        original = await b1.expect(wire.MessageFrame)
        await b1.send(wire.Ack(ids=[original.id], undecryptable=[original.id]))
        await settled(b1)

        # Later, another device of Alice's account encrypts it again for Bob's phone alone.
        clock.advance(minutes=5)
        resent = await resend_ok(
            a2, resend_frame(accepted.message_id, bob.device_id, b"\x02fresh session")
        )
        assert resent == wire.Resent(
            client_msg_id="r1", message_id=accepted.message_id, device_id=1, resends=1
        )

        copy = await b1.expect(wire.MessageFrame)
        assert copy.id > original.id
        assert (copy.message_id, copy.sender, copy.sender_device) == (
            accepted.message_id,
            alice.account_id,
            alice_laptop.device_id,
        )
        assert (copy.klass, copy.type, copy.body) == (
            wire.MessageClass.SESSION,
            0,
            b"\x02fresh session",
        )
        assert copy.server_ms == accepted.server_ms < clock.now_ms()
        assert copy.template_ref is None

        await b1.send(wire.Ack(ids=[copy.id]))
        for client in (a1, a2):
            delivered = await client.expect(wire.Delivered)
            assert (delivered.message_id, delivered.recipient, delivered.recipient_device) == (
                accepted.message_id,
                bob.account_id,
                bob.device_id,
            )

        # Bob's laptop never sees the resend: only its own copy of the original.
        b2 = await relay.connect(bob_laptop)
        own = await b2.expect(wire.MessageFrame)
        await b2.expect(wire.QueueEmpty)
        assert own.body == b"\x01fine"
        assert [f for f in b2.backlog if isinstance(f, wire.MessageFrame)] == []
        await b2.send(wire.Ack(ids=[own.id]))
        await settled(b2)
        # Delivered once per message, however many copies are acked.
        kinds = [e["kind"] for e in await pending(relay, alice)]
        assert kinds == ["delivered"]
        for client in (a1, a2, b1, b2):
            await client.close()


async def test_only_the_senders_account_may_resend_and_others_learn_nothing(
    relay: RunningRelay,
) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    carol = await receiving_device(relay)
    a = await relay.connect(alice)
    accepted = await send_ok(a, send_frame(bob, "m1", {1: b"\x01c"}))
    before = await stored_envelopes(relay)

    answers = []
    for device, message_id in ((carol, accepted.message_id), (bob, accepted.message_id)):
        client = await relay.connect(device)
        answers.append(await refused(client, resend_frame(message_id, 1, client_msg_id="x")))
        await client.close()
    answers.append(await refused(a, resend_frame(UNKNOWN_ID, 1, client_msg_id="x")))

    # A stranger, the recipient and an unknown id get the same answer.
    assert {(e.code, e.message, e.client_msg_id) for e in answers} == {
        (ErrorCode.UNKNOWN_MESSAGE, answers[0].message, "x")
    }
    assert answers[0].code == 150004
    assert await stored_envelopes(relay) == before
    await a.close()


async def test_a_resend_must_name_a_current_device_of_the_recipient(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    alice_laptop = await receiving_device(relay, alice.phone)
    bob = await receiving_device(relay)
    await relay.register(bob.phone)  # device 2, without keys: cannot receive ciphertext
    a = await relay.connect(alice)
    accepted = await send_ok(a, send_frame(bob, "m1", {1: b"\x01c"}))
    to_self = await send_ok(a, send_frame(alice, "sync", {2: b"\x01copy"}))
    before = await stored_envelopes(relay)
    devices = (await relay.http.get("/v1/devices", headers=bob.auth)).json()
    registration = {d["device_id"]: d["registration_id"] for d in devices}

    details = []
    for frame in (
        resend_frame(accepted.message_id, 7),
        resend_frame(accepted.message_id, 2),
        resend_frame(accepted.message_id, 1, registration_id=registration[1] + 1),
        # A device never resends to itself, even a message to its own account.
        resend_frame(to_self.message_id, alice.device_id),
    ):
        error = await refused(a, frame)
        assert (error.code, error.client_msg_id) == (ErrorCode.DEVICE_MISMATCH, "r1")
        details.append(error.details)
    assert details == [
        {"missing": [], "extra": [7], "stale": []},
        {"missing": [], "extra": [2], "stale": []},
        {"missing": [], "extra": [], "stale": [1]},
        {"missing": [], "extra": [alice.device_id], "stale": []},
    ]
    assert await stored_envelopes(relay) == before
    # With the right registration id it goes through.
    frame = resend_frame(accepted.message_id, 1, registration_id=registration[1])
    assert (await resend_ok(a, frame)).resends == 1
    # And a copy to one's own account may be resent to its other devices.
    laptop_copy = resend_frame(to_self.message_id, alice_laptop.device_id)
    assert (await resend_ok(a, laptop_copy)).device_id == alice_laptop.device_id
    await a.close()


async def test_resends_are_limited_per_message(make_relay: MakeRelay) -> None:
    async with make_relay(limits={"max_resends_per_message": 2}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        first = await send_ok(a, send_frame(bob, "m1", {1: b"\x01c"}))
        other = await send_ok(a, send_frame(bob, "m2", {1: b"\x01c"}))

        counts = [
            (await resend_ok(a, resend_frame(first.message_id, 1, client_msg_id=f"r{i}"))).resends
            for i in range(2)
        ]
        assert counts == [1, 2]
        stored = await stored_envelopes(relay)
        error = await refused(a, resend_frame(first.message_id, 1, client_msg_id="r3"))
        assert (error.code, error.client_msg_id) == (ErrorCode.RESEND_LIMIT_REACHED, "r3")
        assert error.code == 150005
        assert error.details == {"message_id": first.message_id, "max_resends": 2}
        assert await stored_envelopes(relay) == stored
        # The limit is per message.
        assert (await resend_ok(a, resend_frame(other.message_id, 1))).resends == 1
        await a.close()


async def test_a_message_that_expired_cannot_be_resent(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, limits={"envelope_ttl_s": HOUR_S}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        accepted = await send_ok(a, send_frame(bob, "m1", {1: b"\x01c"}))
        clock.advance(minutes=59)
        assert (await resend_ok(a, resend_frame(accepted.message_id, 1))).resends == 1

        clock.advance(minutes=1)  # its hour is over, though not yet purged
        stored = await stored_envelopes(relay)
        error = await refused(a, resend_frame(accepted.message_id, 1, client_msg_id="r2"))
        assert error.code == ErrorCode.UNKNOWN_MESSAGE
        assert await stored_envelopes(relay) == stored
        await relay.ctx.mailbox.purge_expired()
        error = await refused(a, resend_frame(accepted.message_id, 1, client_msg_id="r3"))
        assert error.code == ErrorCode.UNKNOWN_MESSAGE
        # The copy resent at minute 59 expired with its message: nothing can arrive after
        # the sender was told the message failed.
        assert await pending(relay, bob) == []
        await a.close()


async def test_resend_bounds_and_rate(make_relay: MakeRelay) -> None:
    clock = ManualClock()  # the send bucket never refills
    limits = {"send_rate_per_device": 1, "send_burst_per_device": 5, "max_ciphertext_bytes": 256}
    async with make_relay(clock=clock, limits=limits) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        accepted = await send_ok(a, send_frame(bob, "m1", {1: b"\x01c"}))
        message_id = accepted.message_id

        empty = await refused(a, resend_frame(message_id, 1, b""))
        assert (empty.code, empty.client_msg_id) == (ErrorCode.INVALID_PARAMETER, "r1")
        large = await refused(a, resend_frame(message_id, 1, b"x" * 257))
        assert (large.code, large.details) == (
            ErrorCode.FRAME_TOO_LARGE,
            {"device_id": 1, "max_bytes": 256},
        )
        # Undecodable, but its client_msg_id still names it.
        raw = dict(
            t="resend",
            v=1,
            client_msg_id="r0",
            message_id=message_id,
            device_id=0,
            type=0,
            body=b"x",
        )
        await a.send_raw(msgspec.msgpack.encode(raw))
        invalid = await a.expect(wire.ErrorFrame)
        assert (invalid.code, invalid.client_msg_id) == (ErrorCode.INVALID_PARAMETER, "r0")
        assert invalid.details["field"] == "$.device_id"

        # Each resend takes a token of the device's send rate, like a send: 1 + 4 of 5.
        for i in range(4):
            await resend_ok(a, resend_frame(message_id, 1, client_msg_id=f"ok{i}"))
        slow = await refused(a, resend_frame(message_id, 1, client_msg_id="late"))
        assert (slow.code, slow.client_msg_id) == (ErrorCode.THROUGHPUT_REACHED, "late")
        assert slow.details["retry_after_ms"] > 0
        await a.close()


async def test_resends_in_one_batch_are_counted_together_and_fail_alone(
    make_relay: MakeRelay,
) -> None:
    async with make_relay(limits={"max_resends_per_message": 2}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        sender = await relay.ctx.accounts.authenticate(alice.token)
        mailbox = relay.ctx.mailbox
        first = await mailbox.send(sender, send_frame(bob, "m1", {1: b"\x01c"}))

        # Submitted without a pause: one group commit holds them all.
        futures = [
            mailbox.submit_resend(sender, resend_frame(first.message_id, 1, client_msg_id="a")),
            mailbox.submit_resend(sender, resend_frame(UNKNOWN_ID, 1, client_msg_id="b")),
            mailbox.submit_resend(sender, resend_frame(first.message_id, 9, client_msg_id="c")),
            mailbox.submit_send(sender, send_frame(bob, "m2", {1: b"\x01d"})),
            mailbox.submit_resend(sender, resend_frame(first.message_id, 1, client_msg_id="d")),
            mailbox.submit_resend(sender, resend_frame(first.message_id, 1, client_msg_id="e")),
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)

        def outcome(result: object) -> object:
            if isinstance(result, TresenError):
                return result.code
            if isinstance(result, AcceptedResend):
                return result.resends
            return type(result).__name__

        assert [outcome(r) for r in results] == [
            1,
            ErrorCode.UNKNOWN_MESSAGE,
            ErrorCode.DEVICE_MISMATCH,
            "AcceptedSend",
            2,
            ErrorCode.RESEND_LIMIT_REACHED,
        ]
        assert isinstance(results[3], AcceptedSend)
        b = await relay.connect(bob)
        bodies = [(await b.expect(wire.MessageFrame)).body for _ in range(4)]
        assert sorted(bodies) == sorted([b"\x01c", b"\x02again", b"\x02again", b"\x01d"])
        await b.close()


async def test_a_resend_waits_for_room_in_the_devices_queue(make_relay: MakeRelay) -> None:
    async with make_relay(limits={"max_queue_per_device": 2}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        first = await send_ok(a, send_frame(bob, "m1", {1: b"\x01c"}))
        await send_ok(a, send_frame(bob, "m2", {1: b"\x01c"}))
        error = await refused(a, resend_frame(first.message_id, 1))
        assert (error.code, error.details) == (
            ErrorCode.QUEUE_FULL,
            {"device_id": 1, "max_queue": 2},
        )
        # A refused resend does not count against the message's limit.
        [entry, _] = await pending(relay, bob)
        r = await relay.http.post("/v1/messages/ack", json={"ids": [entry["id"]]}, headers=bob.auth)
        assert r.json() == {"deleted": 1}
        assert (
            await resend_ok(a, resend_frame(first.message_id, 1, client_msg_id="r2"))
        ).resends == 1
        await a.close()


async def test_resend_and_undecryptable_acks_over_http(make_relay: MakeRelay) -> None:
    async with make_relay(limits={"max_resends_per_message": 1}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        r = await relay.http.post(
            "/v1/messages",
            json={
                "client_msg_id": "m1",
                "to": bob.account_id,
                "per_device": [{"device_id": 1, "type": 1, "body": "Y2lwaGVy"}],
            },
            headers=alice.auth,
        )
        assert r.status_code == 200, r.text
        message_id = r.json()["message_id"]
        [original] = await pending(relay, bob)

        # Naming an id as undecryptable that the ack does not carry: refused, nothing deleted.
        r = await relay.http.post(
            "/v1/messages/ack",
            json={"ids": [original["id"]], "undecryptable": [original["id"] + 1]},
            headers=bob.auth,
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, 100)
        r = await relay.http.post(
            "/v1/messages/ack",
            json={"ids": [original["id"]], "undecryptable": [original["id"]]},
            headers=bob.auth,
        )
        assert r.json() == {"deleted": 1}
        assert await pending(relay, alice) == []

        body = {"client_msg_id": "again-1", "device_id": 1, "type": 0, "body": "ZnJlc2g"}
        path = f"/v1/messages/{message_id}/resend"
        r = await relay.http.post(path, json=body, headers=alice.auth)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "client_msg_id": "again-1",
            "message_id": message_id,
            "device_id": 1,
            "resends": 1,
        }
        [copy] = await pending(relay, bob)
        assert (copy["message_id"], copy["type"], copy["body"]) == (message_id, 0, "ZnJlc2g=")
        assert copy["server_ms"] == original["server_ms"]
        assert copy["peer_device"] == alice.device_id

        answers = []
        for who, where, what in (
            (alice, path, body),  # over the limit of 1
            (alice, f"/v1/messages/{UNKNOWN_ID}/resend", body),
            (bob, path, body),  # the recipient is not the sender
            (alice, path, {**body, "device_id": 5}),
            (alice, path, {**body, "body": ""}),
            (alice, path, {**body, "body": "not base64!"}),
            (alice, path, {**body, "class": "template"}),  # a resend takes no class
        ):
            r = await relay.http.post(where, json=what, headers=who.auth)
            answers.append((r.status_code, r.json()["error"]["code"]))
        assert answers == [
            (409, ErrorCode.RESEND_LIMIT_REACHED),
            (404, ErrorCode.UNKNOWN_MESSAGE),
            (404, ErrorCode.UNKNOWN_MESSAGE),
            (409, ErrorCode.DEVICE_MISMATCH),
            (400, ErrorCode.INVALID_PARAMETER),
            (400, ErrorCode.INVALID_PARAMETER),
            (400, ErrorCode.INVALID_PARAMETER),
        ]

        r = await relay.http.post("/v1/messages/ack", json={"ids": [copy["id"]]}, headers=bob.auth)
        assert r.json() == {"deleted": 1}
        [delivered] = await pending(relay, alice)
        assert (delivered["kind"], delivered["message_id"]) == ("delivered", message_id)
        assert base64.b64decode(copy["body"]) == b"fresh"

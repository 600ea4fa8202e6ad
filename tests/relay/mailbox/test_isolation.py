"""No device can hurt another: bad input is refused to its sender alone, on both backends.

All devices' sends, acks and receipts share one group-commit transaction; a value the
database refuses (an id beyond 64 bits, a NUL character on PostgreSQL) must neither reach it
nor, if it does, fail the other operations of its batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from support import Backend, Device, MakeRelay, RunningRelay, WsClient, receiving_device

from tresen.core.errors import ErrorCode, TresenError
from tresen.wire import relay as wire

SENDS = 200


def _encode(frame: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode({"v": 1, **frame})


def _send(to: str, client_msg_id: str, **changes: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "t": "send",
        "client_msg_id": client_msg_id,
        "to": to,
        "per_device": [{"device_id": 1, "type": 1, "body": b"ciphertext"}],
    }
    frame.update(changes)
    return frame


def _resend(client_msg_id: str, **changes: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "t": "resend",
        "client_msg_id": client_msg_id,
        "message_id": "7fbb70b2bd41c2d70044c8428bb26af7",
        "device_id": 1,
        "type": 1,
        "body": b"ciphertext",
    }
    frame.update(changes)
    return frame


def _nested(depth: int) -> bytes:
    """A msgpack value: ``depth`` arrays, each holding the next."""
    return b"\x91" * depth + b"\xc0"


def bad_frames(to: str) -> list[tuple[str, bytes, str | None]]:
    """(what, raw frame, the client_msg_id its error must name)."""
    return [
        ("ack id 2**63", _encode({"t": "ack", "ids": [2**63]}), None),
        ("ack id 2**64-1", _encode({"t": "ack", "ids": [5, 2**64 - 1]}), None),
        ("ack id 0", _encode({"t": "ack", "ids": [0]}), None),
        ("ack id -1", _encode({"t": "ack", "ids": [-(2**63)]}), None),
        ("NUL in receipt", _encode({"t": "receipt", "message_ids": ["ab\x00cd"]}), None),
        ("ESC in receipt", _encode({"t": "receipt", "message_ids": ["\x1b[2J"]}), None),
        ("NUL in send.to", _encode(_send("x\x00y", "bad-to")), "bad-to"),
        ("NUL in client_msg_id", _encode(_send(to, "bad\x00id")), None),
        ("newline in client_msg_id", _encode(_send(to, "bad\nid")), None),
        ("NUL in template_ref", _encode(_send(to, "bad-tpl", template_ref="1\x00")), "bad-tpl"),
        (
            "device_id 2**63",
            _encode(
                _send(to, "bad-dev", per_device=[{"device_id": 2**63, "type": 1, "body": b"c"}])
            ),
            "bad-dev",
        ),
        (
            "device_id 0",
            _encode(_send(to, "zero-dev", per_device=[{"device_id": 0, "type": 1, "body": b"c"}])),
            "zero-dev",
        ),
        (
            "registration_id 2**64-1",
            _encode(
                _send(
                    to,
                    "bad-reg",
                    per_device=[
                        {"device_id": 1, "type": 1, "body": b"c", "registration_id": 2**64 - 1}
                    ],
                )
            ),
            "bad-reg",
        ),
        ("ack undecryptable 0", _encode({"t": "ack", "ids": [5], "undecryptable": [0]}), None),
        ("NUL in resend.message_id", _encode(_resend("rs-id", message_id="ab\x00cd")), "rs-id"),
        ("resend device_id 2**63", _encode(_resend("rs-dev", device_id=2**63)), "rs-dev"),
        (
            "resend registration_id 2**64-1",
            _encode(_resend("rs-reg", registration_id=2**64 - 1)),
            "rs-reg",
        ),
        ("nested value", b"\x82\xa1t\xa4ping\xa5nonce" + _nested(100_000), None),
        ("nested unknown field", b"\x82\xa1x" + _nested(100_000) + b"\xa1t\xa4ping", None),
        ("nested frame", _nested(100_000), None),
    ]


async def stream_sends(client: WsClient, to: Device, count: int) -> list[wire.ServerFrame]:
    """Pipeline ``count`` sends, then collect one answer for each."""
    for i in range(count):
        await client.send_raw(_encode(_send(to.account_id, f"good-{i}")))
    answers = []
    while len(answers) < count:
        frame = await client.recv()
        if isinstance(frame, wire.Accepted | wire.ErrorFrame):
            answers.append(frame)
    return answers


async def receive_messages(client: WsClient, count: int) -> set[str]:
    received: set[str] = set()
    while len(received) < count:
        message = await client.expect(wire.MessageFrame)
        received.add(message.message_id)
        await client.send(wire.Ack(ids=[message.id]))
    return received


async def offend_over_websocket(client: WsClient, to: Device) -> list[tuple[str, Any]]:
    """Send every bad frame (twice), then a ping; what each was answered with."""
    frames = bad_frames(to.account_id) * 2
    for _, raw, _ in frames:
        await client.send_raw(raw)
    await client.send(wire.Ping(nonce=42))
    answers: list[tuple[str, Any]] = []
    for what, _, client_msg_id in frames:
        error = await client.expect(wire.ErrorFrame)
        answers.append((what, (error.code, error.client_msg_id, client_msg_id, error.message)))
    answers.append(("ping", await client.expect(wire.Pong)))
    return answers


async def offend_over_http(relay: RunningRelay, offender: Device, to: Device) -> list[Any]:
    """Every bad request of the HTTP mailbox routes: (what, status, code, fields named)."""
    send = _send(to.account_id, "http-bad")
    send["per_device"] = [{"device_id": 1, "type": 1, "body": "Y2lwaGVy"}]
    resend = {"client_msg_id": "http-rs", "device_id": 1, "type": 1, "body": "Y2lwaGVy"}
    requests: list[tuple[str, str, str, Any]] = [
        ("ack id 2**63", "POST", "/v1/messages/ack", {"ids": [2**63]}),
        ("ack id 2**70", "POST", "/v1/messages/ack", {"ids": [1, 2**70]}),
        ("ack id 0", "POST", "/v1/messages/ack", {"ids": [0]}),
        ("NUL in receipt", "POST", "/v1/receipts", {"message_ids": ["a\x00"]}),
        ("NUL in send.to", "POST", "/v1/messages", {**send, "to": "x\x00"}),
        ("NUL in client_msg_id", "POST", "/v1/messages", {**send, "client_msg_id": "a\x00"}),
        ("ESC in template_ref", "POST", "/v1/messages", {**send, "template_ref": "\x1b"}),
        (
            "device_id 2**63",
            "POST",
            "/v1/messages",
            {**send, "per_device": [{"device_id": 2**63, "type": 1, "body": "Yw"}]},
        ),
        ("after 2**63", "GET", f"/v1/messages?after={2**63}", None),
        (
            "ack undecryptable 2**63",
            "POST",
            "/v1/messages/ack",
            {"ids": [1], "undecryptable": [2**63]},
        ),
        ("NUL in resend path", "POST", "/v1/messages/a%00b/resend", resend),
        (
            "resend device_id 2**63",
            "POST",
            "/v1/messages/7fbb70b2bd41c2d70044c8428bb26af7/resend",
            {**resend, "device_id": 2**63},
        ),
    ]
    answers = []
    for what, method, path, body in requests:
        r = await relay.http.request(method, path, json=body, headers=offender.auth)
        error = r.json()["error"]
        fields = [p["field"] for p in error["details"].get("problems", [])]
        answers.append((what, r.status_code, error["code"], bool(fields)))
    return answers


async def test_bad_frames_hurt_nobody_but_their_sender(make_relay: MakeRelay) -> None:
    async with make_relay() as relay:
        alice = await relay.register()
        bob = await receiving_device(relay)
        mallory = await relay.register()
        a, b, m = [await relay.connect(d) for d in (alice, bob, mallory)]
        await b.expect(wire.QueueEmpty)

        answers, received, on_ws, on_http = await asyncio.gather(
            stream_sends(a, bob, SENDS),
            receive_messages(b, SENDS),
            offend_over_websocket(m, bob),
            offend_over_http(relay, mallory, bob),
        )

        assert [x for x in answers if not isinstance(x, wire.Accepted)] == []
        assert {x.message_id for x in answers if isinstance(x, wire.Accepted)} == received
        for what, answer in on_ws[:-1]:
            code, got_id, expected_id, message = answer
            assert (what, code, got_id) == (what, ErrorCode.INVALID_PARAMETER, expected_id)
            assert message.startswith("frame"), (what, message)
        assert on_ws[-1] == ("ping", wire.Pong(nonce=42))
        assert on_http == [(what, 400, 100, True) for what, *_ in on_http]
        assert relay.ctx.mailbox.write_failures_isolated == 0
        for client in (a, b, m):
            await client.close()


async def test_a_value_the_database_refuses_fails_only_its_operation(
    make_relay: MakeRelay, backend: Backend
) -> None:
    # Past the decoder (a caller inside the relay, or a bound forgotten): the group commit
    # still isolates the operation and answers it as the client's fault.
    async with make_relay() as relay:
        alice = await relay.register()
        bob = await receiving_device(relay)
        mallory = await relay.register()
        sender = await relay.ctx.accounts.authenticate(alice.token)
        offender = await relay.ctx.accounts.authenticate(mallory.token)
        mailbox = relay.ctx.mailbox

        def good(i: int) -> asyncio.Future[Any]:
            frame = msgspec.msgpack.decode(
                _encode(_send(bob.account_id, f"good-{i}")), type=wire.Send
            )
            return mailbox.submit_send(sender, frame)

        # Submitted without a pause: one batch holds them all.
        futures = [good(i) for i in range(20)]
        poisoned = [mailbox.submit_ack(offender, [2**63])]
        if backend.name == "postgres":
            poisoned.append(mailbox.submit_read(offender, ["ab\x00cd"]))
            # Built past the decoder, which would refuse the NUL.
            resend = wire.Resend(
                client_msg_id="r", message_id="ab\x00cd", device_id=1, type=1, body=b"c"
            )
            poisoned.append(mailbox.submit_resend(offender, resend))
        futures += [good(i) for i in range(20, 40)]
        results = await asyncio.gather(*futures, *poisoned, return_exceptions=True)

        sent, refused = results[: len(futures)], results[len(futures) :]
        assert [type(r).__name__ for r in sent] == ["AcceptedSend"] * len(futures)
        assert [(type(r), getattr(r, "code", None)) for r in refused] == [
            (TresenError, ErrorCode.INVALID_PARAMETER)
        ] * len(poisoned)
        assert mailbox.write_failures_isolated == len(poisoned)
        b = await relay.connect(bob)
        await receive_messages(b, len(futures))
        await b.close()

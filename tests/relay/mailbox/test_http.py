"""The mailbox over plain HTTP (send, fetch, ack, receipts), alone and beside the WebSocket."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support import (
    Device,
    MakeRelay,
    RunningRelay,
    receiving_device,
    send_frame,
    stored_envelopes,
)

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.wire import relay as wire


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def send_body(
    to: Device, client_msg_id: str, bodies: dict[int, bytes], **fields: Any
) -> dict[str, Any]:
    return {
        "client_msg_id": client_msg_id,
        "to": to.account_id,
        "per_device": [
            {"device_id": d, "type": 1, "body": b64(body)} for d, body in sorted(bodies.items())
        ],
        **fields,
    }


async def post_message(relay: RunningRelay, sender: Device, body: dict[str, Any]) -> httpx.Response:
    return await relay.http.post("/v1/messages", json=body, headers=sender.auth)


async def send_ok(
    relay: RunningRelay, sender: Device, to: Device, client_msg_id: str, bodies: dict[int, bytes]
) -> dict[str, Any]:
    r = await post_message(relay, sender, send_body(to, client_msg_id, bodies))
    assert r.status_code == 200, r.text
    accepted: dict[str, Any] = r.json()
    return accepted


async def fetch(relay: RunningRelay, device: Device, **params: int) -> dict[str, Any]:
    r = await relay.http.get("/v1/messages", params=params, headers=device.auth)
    assert r.status_code == 200, r.text
    pending: dict[str, Any] = r.json()
    return pending


async def ack(relay: RunningRelay, device: Device, ids: list[int]) -> int:
    r = await relay.http.post("/v1/messages/ack", json={"ids": ids}, headers=device.auth)
    assert r.status_code == 200, r.text
    return int(r.json()["deleted"])


async def test_send_fetch_ack_over_http(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    ciphertext = bytes(range(256)) + b"\x00\xff\x00"

    accepted = await send_ok(relay, alice, bob, "m1", {1: ciphertext})

    assert accepted["client_msg_id"] == "m1"
    assert accepted["duplicate"] is False
    pending = await fetch(relay, bob)
    assert pending["more"] is False
    [envelope] = pending["envelopes"]
    assert envelope == {
        "id": envelope["id"],
        "kind": "message",
        "message_id": accepted["message_id"],
        "peer": alice.account_id,
        "peer_device": alice.device_id,
        "class": "session",
        "type": 1,
        "body": envelope["body"],
        "server_ms": accepted["server_ms"],
        "pricing": None,
        "template_ref": None,
        "code": None,
        "reason": None,
    }
    assert base64.b64decode(envelope["body"]) == ciphertext
    # Fetching alone removes nothing: only an ack does.
    assert (await fetch(relay, bob))["envelopes"] == [envelope]

    assert await ack(relay, bob, [envelope["id"]]) == 1
    assert (await fetch(relay, bob))["envelopes"] == []

    [delivered] = (await fetch(relay, alice))["envelopes"]
    assert delivered["kind"] == "delivered"
    assert delivered["message_id"] == accepted["message_id"]
    assert (delivered["peer"], delivered["peer_device"]) == (bob.account_id, bob.device_id)
    assert (delivered["type"], delivered["body"]) == (None, None)
    assert await ack(relay, alice, [delivered["id"]]) == 1
    assert await stored_envelopes(relay) == 0


async def test_read_receipts_over_http(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    mallory = await receiving_device(relay)
    accepted = await send_ok(relay, alice, bob, "m1", {1: b"x"})
    message_id = accepted["message_id"]

    def receipt(by: Device) -> Any:
        return relay.http.post("/v1/receipts", json={"message_ids": [message_id]}, headers=by.auth)

    r = await receipt(mallory)  # not addressed to Mallory
    assert r.status_code == 200, r.text
    assert r.json() == {"routed": 0}
    assert (await receipt(bob)).json() == {"routed": 1}
    assert (await receipt(bob)).json() == {"routed": 0}  # reported once

    [read] = (await fetch(relay, alice))["envelopes"]
    assert (read["kind"], read["message_id"], read["peer"]) == ("read", message_id, bob.account_id)


async def test_receipt_class_messages_are_not_reported_back(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    body = send_body(bob, "r1", {1: b"receipt"}, **{"class": "receipt"})
    r = await post_message(relay, alice, body)
    assert r.status_code == 200, r.text

    [envelope] = (await fetch(relay, bob))["envelopes"]
    assert envelope["class"] == "receipt"
    assert await ack(relay, bob, [envelope["id"]]) == 1

    assert (await fetch(relay, alice))["envelopes"] == []


async def test_fetch_pages_with_limit_and_after(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    sent = []
    for i in range(5):
        accepted = await send_ok(relay, alice, bob, f"m{i}", {1: b"%d" % i})
        sent.append(accepted["message_id"])

    first = await fetch(relay, bob, limit=2)
    second = await fetch(relay, bob, limit=2, after=first["envelopes"][-1]["id"])
    third = await fetch(relay, bob, limit=2, after=second["envelopes"][-1]["id"])

    pages = [first, second, third]
    assert [(len(p["envelopes"]), p["more"]) for p in pages] == [(2, True), (2, True), (1, False)]
    envelopes = [e for p in pages for e in p["envelopes"]]
    assert [e["message_id"] for e in envelopes] == sent
    assert [base64.b64decode(e["body"]) for e in envelopes] == [b"0", b"1", b"2", b"3", b"4"]
    last = envelopes[-1]["id"]
    assert await fetch(relay, bob, after=last) == {"envelopes": [], "more": False}
    # A page that holds exactly what is left says there is no more.
    assert (await fetch(relay, bob, limit=5))["more"] is False


async def test_resend_with_the_same_client_id_is_stored_once(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)

    first = await send_ok(relay, alice, bob, "same", {1: b"x"})
    again = await send_ok(relay, alice, bob, "same", {1: b"x"})

    assert again["duplicate"] is True
    assert (again["message_id"], again["server_ms"]) == (first["message_id"], first["server_ms"])
    assert len((await fetch(relay, bob))["envelopes"]) == 1


async def test_http_sender_and_websocket_recipient(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    b = await relay.connect(bob)
    await b.expect(wire.QueueEmpty)

    accepted = await send_ok(relay, alice, bob, "m1", {1: b"\x00over http"})

    message = await b.expect(wire.MessageFrame)  # pushed to the open socket
    assert message.message_id == accepted["message_id"]
    assert message.body == b"\x00over http"
    assert (message.sender, message.sender_device) == (alice.account_id, alice.device_id)
    await b.send(wire.Ack(ids=[message.id]))
    await b.send(wire.Ping())
    await b.expect(wire.Pong)
    [delivered] = (await fetch(relay, alice))["envelopes"]
    assert (delivered["kind"], delivered["message_id"]) == ("delivered", accepted["message_id"])
    await b.close()


async def test_websocket_sender_and_http_recipient(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    a = await relay.connect(alice)
    await a.send(send_frame(bob, "m1", {1: b"\x00over ws"}))
    accepted = await a.expect(wire.Accepted)

    [envelope] = (await fetch(relay, bob))["envelopes"]
    assert envelope["message_id"] == accepted.message_id
    assert base64.b64decode(envelope["body"]) == b"\x00over ws"
    assert await ack(relay, bob, [envelope["id"]]) == 1

    delivered = await a.expect(wire.Delivered)  # the HTTP ack reaches the sender's socket
    assert delivered.message_id == accepted.message_id
    assert delivered.recipient == bob.account_id
    await a.close()


async def test_device_list_mismatch_names_missing_extra_and_stale(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    await receiving_device(relay, bob.phone)

    r = await post_message(relay, alice, send_body(bob, "m", {1: b"x", 7: b"y"}))

    assert r.status_code == 409, r.text
    error = error_of(r)
    assert error["code"] == ErrorCode.DEVICE_MISMATCH
    assert error["details"] == {"missing": [2], "extra": [7], "stale": []}

    devices = (await relay.http.get("/v1/devices", headers=bob.auth)).json()
    registration = {d["device_id"]: d["registration_id"] for d in devices}
    body = send_body(bob, "m2", {1: b"x", 2: b"y"})
    body["per_device"][0]["registration_id"] = registration[1]
    body["per_device"][1]["registration_id"] = registration[2] + 1
    r = await post_message(relay, alice, body)
    assert r.status_code == 409
    assert error_of(r)["details"] == {"missing": [], "extra": [], "stale": [2]}
    assert await stored_envelopes(relay) == 0


async def test_body_that_is_not_base64_is_named(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    body = send_body(bob, "m", {1: b"x"})
    body["per_device"][0]["body"] = "not base64!"

    r = await post_message(relay, alice, body)

    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["code"] == ErrorCode.INVALID_PARAMETER
    fields = [p["field"] for p in error["details"]["problems"]]
    assert any(f.endswith("per_device.0.body") for f in fields), fields
    assert await stored_envelopes(relay) == 0


async def test_malformed_json_is_a_bad_request(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)

    r = await relay.http.post(
        "/v1/messages",
        content=b'{"client_msg_id": "m", "to": ',
        headers={**alice.auth, "Content-Type": "application/json"},
    )

    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER


async def test_oversized_request_is_refused(make_relay: MakeRelay) -> None:
    async with make_relay(limits={"max_frame_bytes": 2048}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        big = send_body(bob, "big", {1: os.urandom(4096)})

        r = await post_message(relay, alice, big)

        assert r.status_code == 413, r.text
        error = error_of(r)
        assert error["code"] == ErrorCode.FRAME_TOO_LARGE
        assert error["details"]["max_bytes"] == 2048
        assert await stored_envelopes(relay) == 0
        await send_ok(relay, alice, bob, "small", {1: b"fits"})


async def test_oversized_streamed_request_is_refused(make_relay: MakeRelay) -> None:
    async with make_relay(limits={"max_frame_bytes": 2048}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        raw = httpx.Request("POST", "/", json=send_body(bob, "big", {1: os.urandom(4096)})).read()

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
            for i in range(0, len(raw), 512):
                yield raw[i : i + 512]

        r = await relay.http.post(
            "/v1/messages",
            content=chunks(),
            headers={**alice.auth, "Content-Type": "application/json"},
        )

        assert r.status_code == 413, r.text
        assert error_of(r)["code"] == ErrorCode.FRAME_TOO_LARGE
        assert await stored_envelopes(relay) == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/v1/messages",
            {
                "client_msg_id": "m",
                "to": "0" * 32,
                "per_device": [{"device_id": 1, "type": 1, "body": "eA=="}],
            },
        ),
        ("GET", "/v1/messages", None),
        ("POST", "/v1/messages/ack", {"ids": [1]}),
        ("POST", "/v1/receipts", {"message_ids": ["x"]}),
    ],
    ids=["send", "fetch", "ack", "receipts"],
)
async def test_mailbox_needs_a_token(
    relay: RunningRelay, method: str, path: str, body: dict[str, Any] | None
) -> None:
    r = await relay.http.request(method, path, json=body)

    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == ErrorCode.INVALID_TOKEN


async def test_a_device_cannot_ack_another_devices_envelopes(relay: RunningRelay) -> None:
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    mallory = await receiving_device(relay)
    await send_ok(relay, alice, bob, "m1", {1: b"for bob"})
    [envelope] = (await fetch(relay, bob))["envelopes"]

    assert await ack(relay, mallory, [envelope["id"]]) == 0

    assert (await fetch(relay, bob))["envelopes"] == [envelope]
    assert (await fetch(relay, alice))["envelopes"] == []  # no false "delivered"


async def test_unknown_routes_and_fields_answer_in_the_error_envelope(relay: RunningRelay) -> None:
    r = await relay.http.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == ErrorCode.INVALID_PARAMETER
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    body = send_body(bob, "m", {1: b"x"})
    body["klass"] = "template"  # a misspelt field is refused, not silently ignored
    r = await relay.http.post("/v1/messages", json=body, headers=alice.auth)
    assert r.status_code == 400
    assert r.json()["error"]["details"]["problems"][0]["field"].endswith("klass")


async def test_the_largest_page_still_says_more(make_relay: MakeRelay) -> None:
    async with make_relay(limits={"max_fetch_batch": 3}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        for i in range(4):
            await send_ok(relay, alice, bob, f"m{i}", {1: b"x"})
        page = (await relay.http.get("/v1/messages?limit=50", headers=bob.auth)).json()
        assert len(page["envelopes"]) == 3
        assert page["more"] is True


async def test_sending_too_fast_over_http_gets_retry_after(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    limits = {"send_rate_per_device": 0.5, "send_burst_per_device": 1}
    async with make_relay(clock=clock, limits=limits) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        await send_ok(relay, alice, bob, "m0", {1: b"x"})
        r = await relay.http.post(
            "/v1/messages", json=send_body(bob, "m1", {1: b"x"}), headers=alice.auth
        )
        assert r.status_code == 429
        assert r.json()["error"]["code"] == ErrorCode.THROUGHPUT_REACHED
        assert r.headers["Retry-After"] == "2"

"""The relay never stores or logs what people write.

1,000 messages carry random markers end to end; afterwards the relay's database (the SQLite
file with its WAL, or every PostgreSQL table) and its log output are searched for each marker.
The same holds for a message resent over a fresh session after its recipient could not
decrypt it, and for resends the relay refuses.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import vodozemac
from support import (
    Backend,
    RelayProcess,
    connect_device,
    make_key_bundle,
    register_device,
    registered_client,
    relay_database_bytes,
)

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.http import tls_context
from tresen.wire import relay as wire
from tresen.wire.e2e import Text

pytestmark = pytest.mark.slow

MESSAGES = 1000


async def receive(client: Client, count: int) -> list[str]:
    texts: list[str] = []
    async for event in client.events():
        if isinstance(event, MessageEvent) and isinstance(event.payload, Text):
            texts.append(event.payload.text)
            if len(texts) == count:
                return texts
    raise AssertionError("event stream ended")


async def test_no_marker_reaches_the_relays_storage_or_logs(
    backend: Backend, tmp_path: Path
) -> None:
    relay = RelayProcess(backend, tmp_path / "relay", TRESEN_LOG_LEVEL="debug")
    await relay.start()
    try:
        alice = await registered_client(relay.url, relay.sms_file, tmp_path / "a", "+4915110000001")
        bob = await registered_client(relay.url, relay.sms_file, tmp_path / "b", "+4915110000002")
        markers = [f"mk{secrets.token_hex(10)}" for _ in range(MESSAGES)]
        half = MESSAGES // 2
        alice.start()
        bob.start()
        at_bob = asyncio.create_task(receive(bob, half))
        at_alice = asyncio.create_task(receive(alice, MESSAGES - half))
        for marker in markers[:half]:
            await alice.send_text("+4915110000002", f"Your order {marker} is on its way")
        for marker in markers[half:]:
            await bob.send_text("+4915110000001", f"Thanks, {marker} received")
        received = await asyncio.wait_for(asyncio.gather(at_bob, at_alice), 120)
        # The markers did travel: each side decrypted exactly what was sent.
        assert [t.split()[2] for t in received[0]] == markers[:half]
        assert [t.split()[1] for t in received[1]] == markers[half:]
        await alice.close()
        await bob.close()
    finally:
        relay.stop()

    stored = await relay_database_bytes(backend)
    logs = relay.log_file.read_bytes()
    # The search works: the relay does store account ids and phone numbers in the clear.
    assert alice.account_id is not None
    assert alice.account_id.encode() in stored
    assert b"+4915110000001" in stored
    assert alice.account_id.encode() in logs
    found = [m for m in markers if m.encode() in stored or m.encode() in logs]
    assert found == []


def encrypt(sender: Any, recipient: Any, one_time_key: str, text: str) -> tuple[int, bytes]:
    """``text`` as the pre-key message of a new Olm session from ``sender`` to ``recipient``."""
    session = sender.create_outbound_session(
        recipient.curve25519_key, vodozemac.Curve25519PublicKey.from_base64(one_time_key)
    )
    message_type, body = session.encrypt(text.encode()).to_parts()
    return message_type, body


async def test_no_marker_of_a_resent_message_reaches_the_relays_storage_or_logs(
    backend: Backend, tmp_path: Path
) -> None:
    relay = RelayProcess(
        backend,
        tmp_path / "relay",
        TRESEN_LOG_LEVEL="debug",
        TRESEN_LIMITS__MAX_RESENDS_PER_MESSAGE="1",
    )
    await relay.start()
    marker, refused_marker = f"mk{secrets.token_hex(10)}", f"mk{secrets.token_hex(10)}"
    text = f"Your order {marker} is on its way"
    alice_olm, bob_olm = vodozemac.Account(), vodozemac.Account()
    try:
        async with httpx.AsyncClient(verify=tls_context(), base_url=relay.url) as http:
            alice = await register_device(http, relay.sms_file, "+4915110000011")
            bob = await register_device(http, relay.sms_file, "+4915110000012")
            bundle = make_key_bundle(bob_olm, 4)
            r = await http.put("/v1/keys", json=bundle, headers=bob.auth)
            assert r.status_code == 200, r.text
        one_time_keys = [k["public_key"] for k in bundle["one_time_keys"]]
        a, b = await connect_device(relay.url, alice), await connect_device(relay.url, bob)

        olm_type, lost = encrypt(alice_olm, bob_olm, one_time_keys[0], text)
        await a.send(
            wire.Send(
                client_msg_id="m1",
                to=bob.account_id,
                per_device=[wire.DeviceCiphertext(device_id=1, type=olm_type, body=lost)],
            )
        )
        message_id = (await a.expect(wire.Accepted)).message_id
        original = await b.expect(wire.MessageFrame)
        # Bob lost the session this was built on: he cannot decrypt it.
        await b.send(wire.Ack(ids=[original.id], undecryptable=[original.id]))

        olm_type, fresh = encrypt(alice_olm, bob_olm, one_time_keys[1], text)
        resend = wire.Resend(
            client_msg_id="r1", message_id=message_id, device_id=1, type=olm_type, body=fresh
        )
        await a.send(resend)
        assert (await a.expect(wire.Resent)).resends == 1
        refused: list[bytes] = []
        for client_msg_id, to_message, key in (
            ("r2", message_id, one_time_keys[2]),  # over the limit of one resend
            ("r3", "0" * 32, one_time_keys[3]),  # no such message
        ):
            olm_type, body = encrypt(alice_olm, bob_olm, key, f"Refused: {refused_marker}")
            refused.append(body)
            frame = wire.Resend(
                client_msg_id=client_msg_id,
                message_id=to_message,
                device_id=1,
                type=olm_type,
                body=body,
            )
            await a.send(frame)
            assert (await a.expect(wire.ErrorFrame)).client_msg_id == client_msg_id

        copy = await b.expect(wire.MessageFrame)
        pre_key = vodozemac.AnyOlmMessage.from_parts(copy.type, copy.body).to_pre_key()
        assert pre_key is not None
        _, plaintext = bob_olm.create_inbound_session(alice_olm.curve25519_key, pre_key)
        assert plaintext.decode() == text  # the marker did travel, in the resent copy
        await b.send(wire.Ack(ids=[copy.id]))
        delivered = await a.expect(wire.Delivered)
        assert delivered.message_id == message_id
        await a.send(wire.Ack(ids=[delivered.id]))
        await a.send(wire.Ping())
        await a.expect(wire.Pong)
        await a.close()
        await b.close()
    finally:
        relay.stop()

    stored = await relay_database_bytes(backend)
    logs = relay.log_file.read_bytes()
    assert alice.account_id.encode() in stored
    assert message_id.encode() in logs or alice.account_id.encode() in logs
    for secret in (marker, refused_marker):
        assert secret.encode() not in stored
        assert secret.encode() not in logs
    # No ciphertext is logged, and what the relay refused was never stored.
    for body in (lost, fresh, *refused):
        assert body not in logs
        assert base64.b64encode(body) not in logs
    for body in refused:
        assert body not in stored

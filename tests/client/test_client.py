"""The client SDK against a real relay process: end-to-end encrypted conversations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import vodozemac
from support import RelayProcess, registered_client

from tresen.client import Client
from tresen.client.events import (
    DecryptionFailed,
    Drained,
    Event,
    IdentityChanged,
    KeysReplenished,
    MessageEvent,
    MessageWaiting,
    StatusChanged,
)
from tresen.client.sdk import IdentityNotTrusted
from tresen.client.store import MessageStatus
from tresen.wire import relay as wire
from tresen.wire.e2e import Text

pytestmark = pytest.mark.slow

ALICE = "+4915110000001"
BOB = "+4915110000002"


class Collector:
    """Everything one client emits, gathered by a background task."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.client.events():
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    async def wait_for(self, predicate: Any, timeout: float = 20) -> list[Event]:
        async def check() -> list[Event]:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.events))
                return list(self.events)

        return await asyncio.wait_for(check(), timeout)

    def texts(self, *, outgoing: bool | None = None) -> list[str]:
        return [
            e.payload.text
            for e in self.events
            if isinstance(e, MessageEvent)
            and isinstance(e.payload, Text)
            and (outgoing is None or e.outgoing == outgoing)
        ]

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def client_for(
    relay: RelayProcess, tmp_path: Path, name: str, phone: str, **options: Any
) -> Client:
    return await registered_client(relay.url, relay.sms_file, tmp_path / name, phone, **options)


def count_texts(events: list[Event], text: str) -> int:
    return sum(
        1
        for e in events
        if isinstance(e, MessageEvent) and isinstance(e.payload, Text) and e.payload.text == text
    )


async def test_two_customers_with_two_devices_each(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    a1 = await client_for(relay_process, tmp_path, "a1", ALICE)
    a2 = await client_for(relay_process, tmp_path, "a2", ALICE)
    b1 = await client_for(relay_process, tmp_path, "b1", BOB)
    b2 = await client_for(relay_process, tmp_path, "b2", BOB)
    clients = {"a1": a1, "a2": a2, "b1": b1, "b2": b2}
    assert a1.account_id == a2.account_id
    assert (a1.device_id, a2.device_id) == (1, 2)
    collectors = {name: Collector(c) for name, c in clients.items()}
    for client in clients.values():
        client.start()
    for collector in collectors.values():
        await collector.wait_for(lambda ev: any(isinstance(e, Drained) for e in ev))

    sent: dict[str, str] = {}
    for sender, to in (("a1", BOB), ("b2", ALICE), ("a2", BOB), ("b1", ALICE)):
        for i in range(3):
            text = f"{sender} says {i}"
            message = await clients[sender].send_text(to, text)
            sent[text] = message.message_id

    # Every device shows every message exactly once: received, or sent by itself or by its
    # account's other device.
    for name, collector in collectors.items():
        others = {t for t in sent if not t.startswith(name)}
        await collector.wait_for(
            lambda ev, others=others: all(count_texts(ev, t) == 1 for t in others), timeout=30
        )
        for text in others:
            assert count_texts(collector.events, text) == 1, (name, text)
        own = {t for t in sent if t.startswith(name)}
        assert not any(count_texts(collector.events, t) for t in own), name

    # Sent copies carry the original message id, so ticks reach every device of the sender.
    transcript = next(
        e
        for e in collectors["a2"].events
        if isinstance(e, MessageEvent) and e.outgoing and e.payload.text == "a1 says 0"  # type: ignore[union-attr]
    )
    assert transcript.message_id == sent["a1 says 0"]
    await collectors["a1"].wait_for(
        lambda ev: any(
            isinstance(e, StatusChanged)
            and e.message_id == sent["a1 says 0"]
            and e.status is MessageStatus.DELIVERED
            for e in ev
        )
    )
    assert await b1.mark_read(ALICE) == 6
    for name in ("a1", "a2"):
        await collectors[name].wait_for(
            lambda ev: any(
                isinstance(e, StatusChanged)
                and e.message_id == sent["a1 says 0"]
                and e.status is MessageStatus.READ
                for e in ev
            )
        )
    assert await b2.mark_read(ALICE) == 0  # b1's reading reached b2 end to end

    for collector in collectors.values():
        await collector.stop()
    for client in clients.values():
        await client.close()


async def test_offline_device_gets_everything_and_sessions_survive_restarts(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    alice = await client_for(relay_process, tmp_path, "alice", ALICE)
    bob = await client_for(relay_process, tmp_path, "bob", BOB)
    texts = [f"while you were away {i}" for i in range(25)]
    for text in texts:
        await alice.send_text(BOB, text)
    await alice.close()

    bob.start()
    seen = Collector(bob)
    await seen.wait_for(lambda ev: len([e for e in ev if isinstance(e, MessageEvent)]) == 25)
    assert seen.texts() == texts
    await seen.stop()
    await bob.close()

    # Both come back from their data folders: the pickled identities and sessions go on.
    alice = Client.open(tmp_path / "alice")
    bob = Client.open(tmp_path / "bob")
    assert alice.registered
    assert bob.registered
    alice.start()
    bob.start()
    alice_seen, bob_seen = Collector(alice), Collector(bob)
    await bob.send_text(ALICE, "back again")
    await alice_seen.wait_for(
        lambda ev: (
            "back again"
            in [
                e.payload.text
                for e in ev
                if isinstance(e, MessageEvent) and isinstance(e.payload, Text)
            ]
        )
    )
    await alice.send_text(BOB, "welcome back")
    await bob_seen.wait_for(lambda ev: count_texts(ev, "welcome back") == 1)
    assert not any(isinstance(e, DecryptionFailed) for e in alice_seen.events + bob_seen.events)
    # The history is still there, decrypted from the local store.
    history = [m.payload for m in bob.store.messages(alice.account_id or "")]
    assert len(history) == 27
    for collector in (alice_seen, bob_seen):
        await collector.stop()
    await alice.close()
    await bob.close()


async def test_corrupted_and_replayed_ciphertext_is_never_shown_and_fails(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    alice = await client_for(relay_process, tmp_path, "alice", ALICE)
    bob = await client_for(relay_process, tmp_path, "bob", BOB)
    await alice.send_text(BOB, "first")
    # A copy of the first envelope's ciphertext, as the relay stored it.
    stored = await relay_process.mailbox_payloads()
    assert len(stored) == 1
    olm_type, body = stored[0]

    bob.start()
    seen = Collector(bob)
    await seen.wait_for(lambda ev: count_texts(ev, "first") == 1)

    async def inject(client_msg_id: str, olm_type: int, body: bytes) -> None:
        ws = await relay_process.raw_socket(alice)
        frame = wire.Send(
            client_msg_id=client_msg_id,
            to=bob.account_id or "",
            per_device=[wire.DeviceCiphertext(device_id=1, type=olm_type, body=body)],
        )
        await ws.send(wire.encode(frame))
        await ws.recv()
        await ws.close()

    await inject("replayed", olm_type, body)
    await inject("corrupted", 1, bytes(reversed(body)))
    alice.start()  # (the forger's socket above used Alice's token, replacing her connection)
    # Neither is shown: each is asked for again, and Alice's device, which never sent them,
    # says so: Bob stops waiting and shows them as failed.
    await seen.wait_for(lambda ev: len([e for e in ev if isinstance(e, DecryptionFailed)]) == 2)
    waiting = [e for e in seen.events if isinstance(e, MessageWaiting)]
    failures = [e for e in seen.events if isinstance(e, DecryptionFailed)]
    assert {w.message_id for w in waiting} == {f.message_id for f in failures}
    assert {f.sender for f in failures} == {alice.account_id}
    assert all("cannot send it again" in f.reason for f in failures)
    # The receive loop goes on: later messages arrive normally.
    await alice.send_text(BOB, "still here")
    await seen.wait_for(lambda ev: count_texts(ev, "still here") == 1)
    assert count_texts(seen.events, "first") == 1
    await seen.stop()
    await alice.close()
    await bob.close()


async def test_a_peers_changed_identity_keys_raise_the_warning(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    alice = await client_for(relay_process, tmp_path, "alice", ALICE, directory_max_age_s=0.0)
    bob = await client_for(relay_process, tmp_path, "bob", BOB)
    await alice.send_text(BOB, "hello")
    before = await alice.safety_number(BOB)

    # Someone swaps Bob's keys in the relay's directory.
    impostor = vodozemac.Account()
    await relay_process.replace_identity_keys(
        bob.account_id or "",
        1,
        impostor.curve25519_key.to_base64(),
        impostor.ed25519_key.to_base64(),
    )
    seen = Collector(alice)
    with pytest.raises(IdentityNotTrusted):
        await alice.send_text(BOB, "are you still you?")
    events = await seen.wait_for(lambda ev: any(isinstance(e, IdentityChanged) for e in ev))
    changed = next(e for e in events if isinstance(e, IdentityChanged))
    assert changed.account_id == bob.account_id
    assert changed.new_ed25519 == impostor.ed25519_key.to_base64()
    # Nothing is sent until the user decides; the safety number shows the difference.
    with pytest.raises(IdentityNotTrusted):
        await alice.send_text(BOB, "still blocked")
    assert await alice.safety_number(BOB) != before
    await seen.stop()
    await alice.close()
    await bob.close()


async def test_one_time_keys_are_replenished(relay_process: RelayProcess, tmp_path: Path) -> None:
    await relay_process.start()
    bob = await client_for(relay_process, tmp_path, "bob", BOB)
    senders = [
        await client_for(relay_process, tmp_path, f"s{i}", f"+49151200000{i:02d}")
        for i in range(45)
    ]
    for sender in senders:
        await sender.send_text(BOB, "hi")
    assert (await bob.api.upload_keys())["one_time_keys"] == 5
    bob.start()
    seen = Collector(bob)
    await seen.wait_for(lambda ev: len([e for e in ev if isinstance(e, MessageEvent)]) == 45)

    events = await seen.wait_for(lambda ev: any(isinstance(e, KeysReplenished) for e in ev))
    assert next(e for e in events if isinstance(e, KeysReplenished)).one_time_keys == 50
    assert (await bob.api.upload_keys())["one_time_keys"] == 50
    await seen.stop()
    for client in [bob, *senders]:
        await client.close()

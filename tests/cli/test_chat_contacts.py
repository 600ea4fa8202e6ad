"""``tresen chat name``, ``contacts``, ``chats`` and ``read``: a saved name stands for the
number in the commands' output, chats list their unread messages, and reading a chat drops
its count. Child processes against a relay in this process, the other person an SDK client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chat_support import run_chat
from support import Backend, RunningRelay, registered_client, serve_relay

from tresen.client.events import StatusChanged
from tresen.client.store import MessageStatus

pytestmark = pytest.mark.slow


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[RunningRelay]:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    async with serve_relay(backend, tmp_path) as running:
        yield running


async def test_names_unread_counts_and_reading_a_chat(relay: RunningRelay, tmp_path: Path) -> None:
    folder = tmp_path / "alice"
    alice = await registered_client(relay.url, relay.sms_file, folder, relay.next_phone())
    alice_phone = alice.phone
    assert alice_phone is not None
    await alice.close()  # the commands below open the folder
    bob = await registered_client(relay.url, relay.sms_file, tmp_path / "bob", relay.next_phone())
    try:
        bob_phone = bob.phone
        assert bob_phone is not None
        await bob.send_text(alice_phone, "Hallo Alice")
        await bob.send_text(alice_phone, "bist du da?")

        assert (await run_chat(folder, "name", bob_phone, "Bob Baumann")).ok == (
            f"{bob_phone} shows as Bob Baumann.\n"
        )
        assert (await run_chat(folder, "name", bob_phone)).ok == "Bob Baumann\n"
        assert (await run_chat(folder, "contacts")).ok == f"Bob Baumann  {bob_phone}\n"
        refused = await run_chat(folder, "name", bob_phone, "Bob\tBaumann")
        assert refused.returncode == 1
        assert "nothing was saved: a name is one line without control characters" in (
            refused.stderr
        )

        # What arrives is printed with the name, not the number.
        heard = (await run_chat(folder, "listen", "--count", "2", "--timeout", "60")).ok
        assert "Bob Baumann → Hallo Alice" in heard
        assert bob_phone not in heard

        # Listened to, not read yet: the chat counts two unread messages.
        [listed] = map(json.loads, (await run_chat(folder, "chats", "--json")).ok.splitlines())
        assert (listed["name"], listed["phone"], listed["unread"]) == ("Bob Baumann", bob_phone, 2)
        assert (await run_chat(folder, "chats")).ok == (
            f"Bob Baumann  2 unread  {listed['account_id']}\n"
        )

        # Reading the chat prints it and tells Bob: the count drops.
        bob.start()
        lines = (await run_chat(folder, "read", bob_phone)).ok.splitlines()
        assert [line.split(" ", 1)[1] for line in lines] == [
            "Bob Baumann → Hallo Alice",
            "Bob Baumann → bist du da?",
        ]
        assert (await run_chat(folder, "chats")).ok == f"Bob Baumann  {listed['account_id']}\n"
        read = 0
        while read < 2:
            event = await bob.next_event(30)
            read += isinstance(event, StatusChanged) and event.status is MessageStatus.READ

        # Own messages carry their status mark.
        await run_chat(folder, "send", "--to", bob_phone, "--text", "ja, hier")
        [*_, mine] = map(
            json.loads, (await run_chat(folder, "read", bob_phone, "--json")).ok.splitlines()
        )
        assert (mine["text"], mine["outgoing"], mine["status"], mine["mark"]) == (
            "ja, hier",
            True,
            "sent",
            "✓",
        )

        forgotten = await run_chat(folder, "name", bob_phone, "--forget")
        assert forgotten.ok == f"{bob_phone} shows as its number again.\n"
        assert (await run_chat(folder, "chats")).ok == f"{bob_phone}  {listed['account_id']}\n"
    finally:
        await bob.close()

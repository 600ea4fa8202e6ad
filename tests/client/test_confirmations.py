"""A device that acknowledges to the relay only what the application confirmed
(``confirm_events``): what it had not confirmed when it stopped comes again, nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support import RelayProcess, registered_client

from tresen.client import Client
from tresen.client.confirmations import Confirmations
from tresen.client.events import Connected, MessageEvent
from tresen.wire.e2e import Text

pytestmark = pytest.mark.slow

ALICE = "+4915110000011"
BOB = "+4915110000012"


async def texts_of(client: Client, count: int, *, keep: set[str]) -> list[MessageEvent]:
    """The next ``count`` text messages ``client`` raises, confirming the events whose text
    is in ``keep`` and every event that is not a text message."""
    received: list[MessageEvent] = []
    while len(received) < count:
        event = await client.next_event(20)
        if isinstance(event, MessageEvent) and isinstance(event.payload, Text):
            received.append(event)
            if event.payload.text not in keep:
                continue
        client.confirm(event)
    return received


def bodies(events: list[MessageEvent]) -> list[str]:
    return [e.payload.text for e in events if isinstance(e.payload, Text)]


async def until_stored(relay: RelayProcess, count: int, within_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while len(await relay.mailbox_payloads()) != count:
        assert loop.time() < deadline, await relay.mailbox_payloads()
        await asyncio.sleep(0.02)


async def test_what_was_not_confirmed_before_a_stop_comes_again_and_nothing_else(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    alice = await registered_client(
        relay_process.url, relay_process.sms_file, tmp_path / "a", ALICE
    )
    bob = await registered_client(
        relay_process.url, relay_process.sms_file, tmp_path / "b", BOB, confirm_events=True
    )
    try:
        for text in ["one", "two", "three"]:
            await alice.send_text(BOB, text)
        bob.start()
        first = await texts_of(bob, 3, keep={"one", "two"})
        assert bodies(first) == ["one", "two", "three"]
        # The relay has applied the acks of what was confirmed: only "three" waits.
        await until_stored(relay_process, 1)
        await bob.close()  # stopped before it kept "three"

        bob = Client.open(tmp_path / "b", confirm_events=True)
        bob.start()
        again = await texts_of(bob, 1, keep={"three"})
        assert bodies(again) == ["three"]
        assert again[0].message_id == first[2].message_id
        assert again[0].sender == first[2].sender

        # Confirmed, it is acknowledged: after another stop only what is new comes.
        await bob.close()
        await alice.send_text(BOB, "four")
        bob = Client.open(tmp_path / "b", confirm_events=True)
        bob.start()
        assert bodies(await texts_of(bob, 1, keep={"four"})) == ["four"]
    finally:
        await alice.close()
        await bob.close()


def test_an_envelope_is_acknowledged_once_all_its_events_are_confirmed() -> None:
    confirmations = Confirmations()
    acknowledged: list[str] = []
    first, second, connected = Connected(), Connected(), Connected()
    confirmations.raised(first)
    confirmations.raised(second)
    confirmations.after_handled(lambda: acknowledged.append("envelope"))
    confirmations.after_handled(lambda: acknowledged.append("nothing raised"))
    assert acknowledged == ["nothing raised"]
    confirmations.confirm(first)
    confirmations.confirm(first)  # twice is once
    assert acknowledged == ["nothing raised"]
    confirmations.raised(connected)
    confirmations.confirm(connected)  # confirmed before its envelope was handled
    confirmations.confirm(second)
    assert acknowledged == ["nothing raised", "envelope"]
    assert confirmations.unconfirmed == 0

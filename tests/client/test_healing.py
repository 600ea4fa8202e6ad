"""Conversations heal themselves: when one side loses or damages its session state, the
message it cannot decrypt is asked for again and arrives, both sides go on without anyone
doing anything, and the sender never sees ✓✓ for a message the recipient could not read."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from gateway_support import next_of
from support import RelayProcess, registered_client

from tresen.cli.chat.records import event_record
from tresen.client import Client
from tresen.client.events import (
    DecryptionFailed,
    Event,
    MessageEvent,
    MessageWaiting,
    StatusChanged,
)
from tresen.client.healing import MAX_ATTEMPTS
from tresen.client.store import MessageStatus
from tresen.wire.e2e import Text

pytestmark = pytest.mark.slow

ANA = "+4915110000201"
BEN = "+4915110000202"


async def talking(relay: RelayProcess, tmp_path: Path) -> tuple[Client, Client]:
    """Ana and Ben, each having sent the other a message (sessions both ways)."""
    ana = await registered_client(relay.url, relay.sms_file, tmp_path / "ana", ANA)
    ben = await registered_client(relay.url, relay.sms_file, tmp_path / "ben", BEN)
    ana.start()
    ben.start()
    await ana.send_text(BEN, "Hallo Ben")
    await next_of(ben, MessageEvent)
    await ben.send_text(ANA, "Hallo Ana")
    await next_of(ana, MessageEvent)
    return ana, ben


async def damaged(client: Client, folder: Path, how: str) -> Client:
    """``client`` closed, its session state lost (``deleted``) or damaged (``corrupted``) on
    disk, and opened again."""
    await client.close()
    with sqlite3.connect(folder / "client.db") as db:
        if how == "deleted":
            db.execute("DELETE FROM sessions")
        else:
            db.execute("UPDATE sessions SET pickle = 'bm90IGEgc2Vzc2lvbg'")
    reopened = Client.open(folder)
    reopened.start()
    return reopened


async def text_of(client: Client, within_s: float = 30) -> tuple[str, str]:
    event = await next_of(client, MessageEvent, within_s)
    assert isinstance(event.payload, Text)
    return event.message_id, event.payload.text


async def statuses_until(client: Client, message_id: str, final: MessageStatus) -> list[Any]:
    """The statuses ``client`` reports for ``message_id`` until ``final``."""
    seen = []
    while True:
        event = await next_of(client, StatusChanged, 30)
        if event.message_id == message_id:
            seen.append(event.status)
            if event.status is final:
                return seen


async def statuses_now(client: Client) -> list[StatusChanged]:
    """The status events ``client`` has emitted so far and not yet handed out."""
    found = []
    while True:
        try:
            event = await client.next_event(0.5)
        except TimeoutError:
            return found
        if isinstance(event, StatusChanged):
            found.append(event)


@pytest.mark.parametrize("how", ["deleted", "corrupted"])
async def test_a_lost_session_heals_and_the_failed_message_arrives(
    relay_process: RelayProcess, tmp_path: Path, how: str
) -> None:
    await relay_process.start()
    ana, ben = await talking(relay_process, tmp_path)
    ana = await damaged(ana, tmp_path / "ana", how)
    await ana.wait_drained()

    # Ben writes over the session Ana no longer has.
    lost = await ben.send_text(ANA, "Dein Paket ist da")

    waiting = await next_of(ana, MessageWaiting, 30)
    assert waiting.message_id == lost.message_id
    record = await event_record(ana, waiting)
    assert (record["event"], record["message_id"], record["from"]) == (
        "waiting",
        lost.message_id,
        BEN,
    )
    shown = ana.store.message(lost.message_id)
    assert shown is not None
    assert shown.status is MessageStatus.WAITING
    # Ben sees it is being sent again, then delivered; never ✓✓ before Ana could read it.
    assert await statuses_until(ben, lost.message_id, MessageStatus.DELIVERED) == [
        MessageStatus.WAITING,
        MessageStatus.DELIVERED,
    ]
    assert await text_of(ana) == (lost.message_id, "Dein Paket ist da")
    stored = ana.store.message(lost.message_id)
    assert stored is not None
    assert stored.status is MessageStatus.RECEIVED

    # And both go on, in both directions, without anyone doing anything.
    await ana.send_text(BEN, "Danke!")
    assert (await text_of(ben))[1] == "Danke!"
    await ben.send_text(ANA, "Gern")
    assert (await text_of(ana))[1] == "Gern"
    await ana.close()
    await ben.close()


async def test_the_sender_losing_its_session_heals_too(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    ana, ben = await talking(relay_process, tmp_path)
    ben = await damaged(ben, tmp_path / "ben", "deleted")
    await ben.wait_drained()

    # Ana still writes over the old session; Ben, who lost it, asks again and reads it.
    first = await ana.send_text(BEN, "Bist du da?")
    assert await text_of(ben) == (first.message_id, "Bist du da?")
    await ben.send_text(ANA, "Ja")
    assert (await text_of(ana))[1] == "Ja"
    await ana.send_text(BEN, "Gut")
    assert (await text_of(ben))[1] == "Gut"
    await ana.close()
    await ben.close()


async def test_a_message_that_never_decrypts_fails_after_bounded_retries(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    """A device whose every new session breaks again (its state is damaged each time) stops
    asking after a few attempts and shows the message as failed; the sender never sees ✓✓."""
    await relay_process.start()
    ana, ben = await talking(relay_process, tmp_path)
    ana_events: list[Event] = []
    original = ana.receiver.sessions.decrypt

    def always_fails(*args: Any) -> Any:
        from tresen.crypto import CryptoError

        raise CryptoError("damaged session state")

    ana.receiver.sessions.decrypt = always_fails  # type: ignore[method-assign]
    lost = await ben.send_text(ANA, "Hörst du mich?")
    while True:
        event = await ana.next_event(30)
        ana_events.append(event)
        if isinstance(event, DecryptionFailed):
            break
    waits = [e for e in ana_events if isinstance(e, MessageWaiting)]
    assert len(waits) == MAX_ATTEMPTS
    stored = ana.store.message(lost.message_id)
    assert stored is not None
    assert stored.status is MessageStatus.FAILED
    # Ben was told it is being sent again, and never that it was delivered.
    about_lost = [s for s in await statuses_now(ben) if s.message_id == lost.message_id]
    assert [s.status for s in about_lost] == [MessageStatus.WAITING]
    sent = ben.store.message(lost.message_id)
    assert sent is not None
    assert sent.status is MessageStatus.WAITING
    ana.receiver.sessions.decrypt = original  # type: ignore[method-assign]
    await ana.close()
    await ben.close()

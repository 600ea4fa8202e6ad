"""The terminal app's model without Textual and without a relay: what it lists and shows from
the client's store, the input line's commands, and time from a controllable clock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tresen.client import Client
from tresen.client.app import ChatModel, LineKind, Typed, parse
from tresen.client.events import TypingStarted
from tresen.client.store import MessageStatus, StoredMessage
from tresen.core.clock import ManualClock
from tresen.wire.e2e import Text, encode_payload

ALICE, ALICE_PHONE = "acc-alice", "+4915140000001"
SHOP, SHOP_PHONE = "acc-shop", "+4930555010000"
NOW = 1_767_225_600_000


def offline(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("the network is down", request=request)


@pytest.fixture
async def model(tmp_path: Path) -> AsyncIterator[ChatModel]:
    clock = ManualClock(NOW)
    client = Client.open(
        tmp_path / "me",
        "http://relay.invalid",
        transport=httpx.MockTransport(offline),
        clock=clock,
    )
    store = client.store
    store.remember_peer(ALICE, ALICE_PHONE, NOW)
    store.remember_peer(SHOP, SHOP_PHONE, NOW)
    store.put_business(SHOP, "Tresen Air", "verified", {}, NOW)
    yield ChatModel(client)
    await client.close()


def put(
    model: ChatModel,
    message_id: str,
    chat: str,
    status: MessageStatus,
    *,
    text: str | None = "hi",
    outgoing: bool = False,
    at_ms: int = NOW,
    error: str | None = None,
) -> None:
    model.client.store.put_message(
        StoredMessage(
            message_id=message_id,
            chat=chat,
            outgoing=outgoing,
            sender_account="me" if outgoing else chat,
            sender_device=1,
            client_msg_id=None,
            payload=None if text is None else encode_payload(Text(text=text)),
            status=status,
            server_ms=at_ms,
            error=error,
        )
    )


def test_the_input_line_is_a_text_or_a_command() -> None:
    assert parse("   ") is None
    assert parse(" Hallo ") == Typed(None, "Hallo")
    assert parse("//slash is text") == Typed(None, "/slash is text")
    assert parse("/NEW  +49 151 ") == Typed("/new", "+49 151")
    assert parse("/help") == Typed("/help", "")


async def test_chats_list_their_unread_messages_and_names(model: ChatModel) -> None:
    put(model, "a1", ALICE, MessageStatus.SEEN, at_ms=NOW)
    put(model, "a2", ALICE, MessageStatus.RECEIVED, at_ms=NOW + 1)
    put(model, "a3", ALICE, MessageStatus.RECEIVED, at_ms=NOW + 2)
    put(model, "s1", SHOP, MessageStatus.RECEIVED, at_ms=NOW + 3)
    rows = model.chat_rows()
    assert [(r.title, r.label, r.unread) for r in rows] == [
        ("Tresen Air", "Business ✓ verified", 1),
        (ALICE_PHONE, None, 2),
    ]
    assert model.chats_heading(rows) == "Chats · 3 unread"
    # Read on this (or another) device: the count drops.
    model.client.store.mark_seen(["a2", "a3"])
    assert [r.unread for r in model.chat_rows()] == [1, 0]
    assert model.chats_heading(model.chat_rows()) == "Chats · 1 unread"


async def test_name_shows_a_name_instead_of_the_number(model: ChatModel) -> None:
    put(model, "a1", ALICE, MessageStatus.RECEIVED)
    assert await model.submit(f"/name {ALICE_PHONE} Alice Schmidt")
    assert model.feedback == f"{ALICE_PHONE} is shown as Alice Schmidt (on this device only)."
    assert [r.title for r in model.chat_rows()] == ["Alice Schmidt"]
    # The number stays beside a saved name in the chat's title bar.
    assert model.heading(ALICE) == f"Alice Schmidt · {ALICE_PHONE}"

    await model.submit(f"/name {ALICE_PHONE} Alice\x1b[2J")
    assert model.feedback.startswith("Not saved: a name is one line without control characters")
    await model.submit(f"/name {ALICE_PHONE} {'x' * 65}")
    assert model.feedback == "Not saved: a name has at most 64 characters, not 65."
    await model.submit(f"/name {SHOP_PHONE} Cheap Flights")
    assert model.feedback == "Not saved: Tresen Air is a business: its name comes from its profile."
    await model.submit("/name Ali")
    assert model.feedback.startswith("Name whom?")

    await model.submit(f"/name {ALICE_PHONE}")
    assert model.feedback == f"{ALICE_PHONE} is shown as its number again."
    assert model.heading(ALICE) == ALICE_PHONE


async def test_lines_show_each_status_of_a_sent_message(model: ChatModel) -> None:
    put(model, "m1", ALICE, MessageStatus.PENDING, text="one", outgoing=True, at_ms=NOW)
    put(model, "m2", ALICE, MessageStatus.WAITING, text="two", outgoing=True, at_ms=NOW + 1)
    put(model, "m3", ALICE, MessageStatus.WAITING, text=None, at_ms=NOW + 2)
    put(
        model, "m4", ALICE, MessageStatus.FAILED, text="four", outgoing=True, at_ms=NOW + 3,
        error="expired before delivery",
    )  # fmt: skip
    put(model, "m5", ALICE, MessageStatus.READ, text="five", outgoing=True, at_ms=NOW + 4)
    assert [(line.kind, line.text, line.ticks) for line in model.lines(ALICE)] == [
        (LineKind.MESSAGE, "one", "⏱ waiting for the network"),
        (LineKind.MESSAGE, "two", "⌛ resending — the recipient's device could not read it yet"),
        (LineKind.WAITING, "Waiting for this message. This may take a while.", ""),
        (LineKind.MESSAGE, "four", "✗ not delivered: expired before delivery"),
        (LineKind.MESSAGE, "five", "✓✓"),
    ]
    assert model.lines(ALICE)[-1].mark.highlight


async def test_time_comes_from_the_clock(model: ChatModel) -> None:
    clock = model.clock
    assert isinstance(clock, ManualClock)
    await model.handle(TypingStarted(ALICE, "m1", until_ms=NOW + 25_000))
    assert model.heading(ALICE).endswith(" · typing…")
    clock.advance(seconds=25)
    assert "typing" not in model.heading(ALICE)

    model.open_chat = ALICE
    await model.submit("/block")  # the relay is out of reach
    assert model.feedback.startswith("Cannot reach the relay (the network is down)")
    model.note(ALICE, LineKind.NOTICE, "a notice")
    assert model.lines(ALICE)[-1].at_ms == clock.now_ms()


async def test_commands_say_what_they_need(model: ChatModel) -> None:
    await model.submit("/block")
    assert model.feedback == "Open a chat first; /block blocks that chat."
    await model.submit("/frobnicate")
    assert model.feedback.startswith("Unknown command /frobnicate. /new +49… opens a chat")
    await model.submit("/help")
    assert "/name +49… Alice" in model.feedback
    assert not await model.submit("/quit")


def test_the_model_and_the_texts_need_no_terminal() -> None:
    code = (
        "import sys, tresen.client.app, tresen.client.presentation; "
        "assert 'textual' not in sys.modules, 'textual was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

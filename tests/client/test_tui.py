"""The terminal app against a real relay process, with an SDK client as the other person.

``ChatModel`` is exercised directly (no terminal); ``ChatApp`` headlessly through Pilot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import vodozemac
from support import RelayProcess, registered_client
from textual.pilot import Pilot
from textual.widgets import Input, Static
from tui_support import until

from tresen.client import Client
from tresen.client.app import ChatModel, LineKind
from tresen.client.events import MessageEvent, StatusChanged
from tresen.client.store import MessageStatus
from tresen.client.tui import ChatApp, ChatItem, LineView
from tresen.relay.accounts.sms import read_last_code
from tresen.wire import relay as wire
from tresen.wire.e2e import Text

pytestmark = pytest.mark.slow

ALICE = "+4915140000001"
BOB = "+4915140000002"
NOBODY = "+4915149999999"


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(relay_process: RelayProcess, tmp_path: Path) -> AsyncIterator[MakeClient]:
    """``await make_client("alice", ALICE)``: a registered client (``phone=None``: not
    registered) on a started relay process, closed after the test."""
    await relay_process.start()
    made: list[Client] = []

    async def make(name: str, phone: str | None, **options: Any) -> Client:
        folder = tmp_path / name
        if phone is None:
            client = Client.open(folder, relay_process.url, **options)
        else:
            client = await registered_client(
                relay_process.url, relay_process.sms_file, folder, phone, **options
            )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def next_message(peer: Client, timeout: float = 30) -> MessageEvent:
    while True:
        event = await peer.next_event(timeout)
        if isinstance(event, MessageEvent):
            return event


async def type_line(pilot: Pilot[None], text: str) -> None:
    await pilot.press(*text, "enter")


def lines(app: ChatApp) -> list[LineView]:
    return list(app.query(LineView))


def text_of(widget: Static) -> str:
    return str(widget.visual)


# --- the model, without a terminal -----------------------------------------------------------


async def test_model_commands_and_sending(make_client: MakeClient) -> None:
    alice = await make_client("alice", ALICE)
    bob = await make_client("bob", BOB)
    model = ChatModel(alice)

    assert await model.submit("hello?")
    assert "Open a chat first" in model.feedback
    assert await model.submit(f"/new {NOBODY}")
    assert "no account is registered for this number" in model.feedback
    assert model.open_chat is None
    assert await model.submit("/frobnicate")
    assert "Unknown command /frobnicate" in model.feedback

    assert await model.submit(f"/new {BOB}")
    assert model.open_chat == bob.account_id
    assert [(r.title, r.unread) for r in model.chat_rows()] == [(BOB, 0)]
    assert await model.submit("Hallo Bob")
    assert await model.submit("//slash is text")
    [first, second] = model.lines(bob.account_id or "")
    assert (first.text, first.outgoing, first.ticks) == ("Hallo Bob", True, "✓")
    assert second.text == "/slash is text"

    await model.submit("/safety")
    notice = model.lines(bob.account_id or "")[-1]
    assert notice.kind is LineKind.NOTICE
    assert await bob.safety_number(ALICE) in notice.text
    await model.submit("/trust")
    assert "nothing to accept" in model.feedback
    assert not await model.submit("/quit")


async def test_model_takes_in_events(make_client: MakeClient) -> None:
    alice = await make_client("alice", ALICE)
    bob = await make_client("bob", BOB)
    model = ChatModel(alice)
    await bob.send_text(ALICE, "one")
    await bob.send_text(ALICE, "two")
    alice.start()
    bob.start()
    received = 0
    while received < 2:
        event = await alice.next_event(30)
        await model.handle(event)
        received += isinstance(event, MessageEvent)
    # Bob was unknown to Alice: the chat shows his number, with two unread messages.
    [row] = model.chat_rows()
    assert (row.title, row.unread) == (BOB, 2)

    await model.open(BOB)
    assert model.chat_rows()[0].unread == 0
    assert [line.text for line in model.lines(row.account_id)] == ["one", "two"]
    while True:  # Bob sees that Alice read them
        event = await bob.next_event(30)
        if isinstance(event, StatusChanged) and event.status is MessageStatus.READ:
            break


# --- the app, headless ------------------------------------------------------------------------


async def test_registering_in_the_app(make_client: MakeClient, relay_process: RelayProcess) -> None:
    client = await make_client("alice", None)
    app = ChatApp(client, device_name="laptop")
    async with app.run_test(size=(100, 30)) as pilot:
        await type_line(pilot, "+49 151")
        await until(
            pilot,
            lambda: "(code 150010)" in text_of(app.screen.query_one("#register-error", Static)),
        )
        phone = app.screen.query_one("#phone", Input)
        phone.value = ""
        await type_line(pilot, ALICE)
        await until(pilot, lambda: not app.screen.query_one("#code", Input).disabled)
        code = read_last_code(relay_process.sms_file, ALICE)
        assert code is not None
        await type_line(pilot, code)
        await until(pilot, lambda: app.model.connected)
        assert client.registered
        assert ALICE in app.sub_title
        assert app.focused is app.query_one("#input", Input)
        # The operator key pinned on the way, to compare with what the operator publishes.
        assert client.operator_fingerprint is not None
        assert client.operator_fingerprint in text_of(app.query_one("#feedback", Static))


async def test_a_conversation_in_the_app(make_client: MakeClient) -> None:
    alice = await make_client("alice", ALICE)
    bob = await make_client("bob", BOB)
    bob.start()
    app = ChatApp(alice)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.model.connected)
        await type_line(pilot, f"/new {BOB}")
        await until(pilot, lambda: text_of(app.query_one("#chat-title", Static)) == BOB)
        [item] = app.query(ChatItem)
        assert item.row.title == BOB

        await type_line(pilot, "Hallo Bob!")
        await until(pilot, lambda: len(lines(app)) == 1)
        [mine] = lines(app)
        assert mine.line.outgoing
        assert mine.has_class("outgoing")
        assert "Hallo Bob!" in text_of(mine)
        assert "✓" in text_of(mine)

        # Bob's device takes it in: Alice's tick doubles.
        received = await next_message(bob)
        assert isinstance(received.payload, Text)
        assert received.payload.text == "Hallo Bob!"
        await until(pilot, lambda: lines(app)[0].line.status is MessageStatus.DELIVERED)
        assert "✓✓" in text_of(lines(app)[0])

        # Bob reads it: the ticks change colour.
        await bob.mark_read(ALICE)
        await until(pilot, lambda: lines(app)[0].has_class("read"))

        # Bob answers; the open chat shows it at once, and marks it read for him.
        await bob.send_text(ALICE, "Hallo Alice, schön von dir zu hören")
        await until(pilot, lambda: len(lines(app)) == 2)
        theirs = lines(app)[1]
        assert theirs.has_class("incoming")
        assert "schön von dir" in text_of(theirs)
        while True:
            event = await bob.next_event(30)
            if isinstance(event, StatusChanged) and event.status is MessageStatus.READ:
                break

        await type_line(pilot, "/safety")
        await until(pilot, lambda: lines(app)[-1].line.kind is LineKind.NOTICE)
        assert (await bob.safety_number(ALICE)) in text_of(lines(app)[-1])

        await type_line(pilot, "/quit")
        await until(pilot, lambda: not app.is_running)


async def test_messages_arrive_in_the_chat_list(make_client: MakeClient) -> None:
    alice = await make_client("alice", ALICE)
    bob = await make_client("bob", BOB)
    app = ChatApp(alice)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.model.connected)
        await bob.send_text(ALICE, "bist du da?")
        await until(pilot, lambda: len(app.query(ChatItem)) == 1)
        [item] = app.query(ChatItem)
        assert (item.row.title, item.row.unread) == (BOB, 1)
        assert not lines(app)  # nothing opened yet

        # Picking the chat in the list opens it and marks it read.
        await pilot.press("ctrl+l", "enter")
        await until(pilot, lambda: len(lines(app)) == 1)
        assert "bist du da?" in text_of(lines(app)[0])
        await until(pilot, lambda: app.query_one(ChatItem).row.unread == 0)
        assert app.focused is app.query_one("#input", Input)


async def test_changed_identity_keys_warn_and_pause_sending(
    make_client: MakeClient, relay_process: RelayProcess
) -> None:
    alice = await make_client("alice", ALICE, directory_max_age_s=0.0)
    bob = await make_client("bob", BOB)
    app = ChatApp(alice)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.model.connected)
        await type_line(pilot, f"/new {BOB}")
        await type_line(pilot, "before")
        await until(pilot, lambda: len(lines(app)) == 1)
        banner = app.query_one("#banner", Static)
        assert not banner.display

        impostor = vodozemac.Account()
        await relay_process.replace_identity_keys(
            bob.account_id or "",
            1,
            impostor.curve25519_key.to_base64(),
            impostor.ed25519_key.to_base64(),
        )
        await type_line(pilot, "after")
        await until(pilot, lambda: banner.display)
        assert "security keys of" in text_of(banner)
        assert "/trust" in text_of(banner)
        await until(pilot, lambda: any("Not sent" in text_of(v) for v in lines(app)))
        [item] = app.query(ChatItem)
        assert item.row.warning
        assert [v.line.text for v in lines(app) if v.line.kind is LineKind.MESSAGE] == ["before"]

        await type_line(pilot, "/trust")
        await until(pilot, lambda: not banner.display)
        assert "accepted the new security keys" in text_of(lines(app)[-1])


async def test_an_undecryptable_message_waits_to_be_sent_again(
    make_client: MakeClient, relay_process: RelayProcess
) -> None:
    alice = await make_client("alice", ALICE)
    bob = await make_client("bob", BOB)
    await bob.send_text(ALICE, "echt")
    app = ChatApp(alice)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: len(app.query(ChatItem)) == 1)
        await type_line(pilot, f"/new {BOB}")
        await until(pilot, lambda: len(lines(app)) == 1)

        # Bob's device sends something no session can decrypt.
        ws = await relay_process.raw_socket(bob)
        frame = wire.Send(
            client_msg_id="garbage",
            to=alice.account_id or "",
            per_device=[wire.DeviceCiphertext(device_id=1, type=1, body=b"\x03" * 64)],
        )
        await ws.send(wire.encode(frame))
        await ws.recv()
        await ws.close()

        # Shown in its place as waiting (Alice's device asked Bob's for it again), never as
        # text; the chat goes on.
        await until(pilot, lambda: len(lines(app)) == 2)
        waiting = lines(app)[1]
        assert waiting.line.kind is LineKind.WAITING
        assert "Waiting for this message. This may take a while." in text_of(waiting)
        await bob.send_text(ALICE, "noch da")
        await until(pilot, lambda: len(lines(app)) == 3)
        assert "noch da" in text_of(lines(app)[2])

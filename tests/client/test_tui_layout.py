"""What the terminal app shows at common terminal sizes: the newest message stays in view above
the hint bar and the input, and unread counts stand beside the chats; against an in-process
relay (SQLite), Textual's Pilot driving the app headlessly."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import Backend, RunningRelay, registered_client, serve_relay
from textual.containers import VerticalScroll
from textual.widgets import Input, Static
from tui_support import until

from tresen.client import Client
from tresen.client.tui import ChatApp, ChatItem, LineView


@dataclass
class People:
    relay: RunningRelay
    tmp_path: Path
    clients: list[Client] = field(default_factory=list)

    async def person(self, name: str) -> Client:
        client = await registered_client(
            self.relay.url, self.relay.sms_file, self.tmp_path / name, self.relay.next_phone()
        )
        self.clients.append(client)
        return client


@pytest.fixture
async def people(tmp_path: Path) -> AsyncIterator[People]:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    async with serve_relay(backend, tmp_path) as relay:
        made = People(relay, tmp_path)
        yield made
        for client in made.clients:
            await client.close()


def text_of(widget: Static) -> str:
    return str(widget.visual)


def assert_in_view(app: ChatApp, line: LineView) -> None:
    """``line`` is on screen, whole, inside the chat's scroll area: not under the hint bar or
    the input, and the widget a person sees at its last row is that line."""
    messages = app.query_one("#messages", VerticalScroll)
    region = line.region
    assert region.height > 0, "the line is not on screen"
    assert messages.content_region.contains_region(region), (region, messages.content_region)
    for other in (app.query_one("#feedback", Static), app.query_one("#input", Input)):
        assert not region.overlaps(other.region), (region, other.region)
    seen, _ = app.screen.get_widget_at(region.x + 1, region.bottom - 1)
    assert seen is line or line in seen.ancestors, seen
    # Scrolled to the end: nothing of the chat is below it.
    assert region.bottom == messages.content_region.bottom, (region, messages.content_region)


@pytest.mark.parametrize("size", [(130, 40), (80, 24)])
async def test_the_newest_message_is_never_hidden(people: People, size: tuple[int, int]) -> None:
    alice = await people.person("alice")
    bob = await people.person("bob")
    assert alice.phone is not None
    for n in range(1, 25):
        text = f"message {n}" if n % 5 else f"message {n}\nwith a second line"
        await bob.send_text(alice.phone, text)
    app = ChatApp(alice)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.model.connected)
        await pilot.press(*f"/new {bob.phone}", "enter")
        await until(pilot, lambda: len(app.query(LineView)) == 24)
        await pilot.pause()
        assert_in_view(app, list(app.query(LineView))[-1])

        # The hint bar grows with a long answer: the newest line moves up, still in view.
        await pilot.press(*"/help", "enter")
        await until(pilot, lambda: "/report" in text_of(app.query_one("#feedback", Static)))
        await pilot.pause()
        assert_in_view(app, list(app.query(LineView))[-1])

        # A new message while the chat is open joins at the bottom, in view.
        await bob.send_text(alice.phone, "the newest one")
        await until(pilot, lambda: "the newest one" in text_of(list(app.query(LineView))[-1]))
        await pilot.pause()
        assert_in_view(app, list(app.query(LineView))[-1])

        # Sending: the own message shows at once, in view, above the input.
        await pilot.press(*"thanks!", "enter")
        await until(pilot, lambda: "thanks!" in text_of(list(app.query(LineView))[-1]))
        await pilot.pause()
        assert_in_view(app, list(app.query(LineView))[-1])
        screenshots = os.environ.get("TRESEN_SCREENSHOTS")
        if screenshots and size == (130, 40):
            # docs/screenshots/chat-app.svg: TRESEN_SCREENSHOTS=docs/screenshots make test
            app.save_screenshot("chat-app.svg", screenshots)


def listed(app: ChatApp) -> list[str]:
    """What the chat list shows, one chat a line (an item still being mounted shows nothing)."""
    return [text_of(line) for item in app.query(ChatItem) for line in item.query(Static)[:1]]


async def test_the_chat_list_counts_unread_messages_and_shows_names(people: People) -> None:
    alice = await people.person("alice")
    bob = await people.person("bob")
    carol = await people.person("carol")
    assert alice.phone is not None
    await bob.send_text(alice.phone, "one")
    await bob.send_text(alice.phone, "two")
    await carol.send_text(alice.phone, "hi!")
    app = ChatApp(alice)
    async with app.run_test(size=(130, 40)) as pilot:
        heading = app.query_one("#chats-title", Static)
        # The heading and the list are drawn one after the other: wait for both.
        await until(pilot, lambda: text_of(heading) == "Chats · 3 unread" and len(listed(app)) == 2)
        assert sorted(listed(app)) == sorted([f"{bob.phone}  2", f"{carol.phone}  1"])

        await pilot.press(*f"/name {bob.phone} Bob Baumann", "enter")
        await until(pilot, lambda: "Bob Baumann  2" in listed(app))
        assert f"{bob.phone} is shown as Bob Baumann" in text_of(app.query_one("#feedback", Static))

        # Opening the chat reads it: its count goes, the total drops.
        await pilot.press(*f"/new {bob.phone}", "enter")
        # The heading and the list are drawn one after the other: wait for both.
        await until(
            pilot, lambda: text_of(heading) == "Chats · 1 unread" and "Bob Baumann" in listed(app)
        )
        title = text_of(app.query_one("#chat-title", Static))
        assert title == f"Bob Baumann · {bob.phone}"
        assert [v.line.text for v in app.query(LineView)] == ["one", "two"]

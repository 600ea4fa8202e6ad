"""The customer's terminal app: chats on the left, the open chat on the right, input below.

Widgets and layout only: :class:`~tresen.client.app.ChatModel` is what the app knows and does
(tested without a terminal); :class:`ChatApp` shows it and feeds it what the user types and
what the client reports. Every text comes from the model or from
:mod:`tresen.client.presentation`.
"""

from __future__ import annotations

import asyncio
import platform
from typing import ClassVar

import httpx
from rich.console import RenderableType
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, ListItem, ListView, Static

from tresen.client.api import RelayError
from tresen.client.app import COMMANDS_HELP, ChatLine, ChatModel, ChatRow, LineKind
from tresen.client.events import TypingStarted
from tresen.client.presentation import (
    code_retry_text,
    code_sent_text,
    operator_key_text,
    registration_error_text,
    time_text,
)
from tresen.client.registration import CodeAttempts
from tresen.client.sdk import Client
from tresen.core.clock import Clock
from tresen.crypto import CryptoError

__all__ = ["ChatApp", "ChatItem", "LineView", "RegisterScreen"]

NEW_CODE = "Enter your number again (Enter) for a new code."


class ChatItem(ListItem):
    """One chat in the list: its name, business label, unread count and warnings."""

    def __init__(self, row: ChatRow) -> None:
        self.row = row
        parts: list[str | tuple[str, str]] = [(row.title, "bold" if row.unread else "")]
        if row.label:
            parts.append((f"  {row.label}", "bold green" if row.verified else "italic"))
        if row.unread:
            parts.append((f"  {row.unread}", "bold reverse"))
        if row.warning:
            parts.append(("  ⚠", "bold red"))
        if row.blocked:
            parts.append(("  ⊘ blocked", "red"))
        super().__init__(Label(Content.assemble(*parts)))


class LineView(Static):
    """One line of a chat: a message (ours on the right, with its status mark) or a notice."""

    def __init__(self, line: ChatLine, now_ms: int) -> None:
        self.line = line
        classes = [str(line.kind)]
        if line.kind is LineKind.MESSAGE:
            classes.append("outgoing" if line.outgoing else "incoming")
        if line.mark.highlight:
            classes.append("read")
        super().__init__(self._content(line, now_ms), classes=" ".join(classes))

    @staticmethod
    def _content(line: ChatLine, now_ms: int) -> Content:
        when = (time_text(line.at_ms, now_ms), "dim")
        if line.kind is not LineKind.MESSAGE:
            return Content.assemble(when, "  ", line.text)
        marker: list[str | tuple[str, str]] = (
            [] if line.marker is None else [(line.marker, "dim italic"), "\n"]
        )
        if not line.outgoing:
            return Content.assemble(when, "  ", *marker, line.text)
        mark = line.mark
        style = "bold cyan" if mark.highlight else "bold red" if mark.problem else "dim"
        return Content.assemble(*marker, line.text, "  ", when, " ", (str(mark), style))


class RegisterScreen(Screen[bool]):
    """Phone number, then the code from the SMS (a wrong one may be typed again, a few
    times); dismissed with True once registered."""

    def __init__(self, client: Client, device_name: str | None = None) -> None:
        super().__init__()
        self.client = client
        self.device_name = device_name or f"tresen chat on {platform.node()}"
        self.phone = ""
        self.attempts = CodeAttempts()

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="register"):
            yield Static("Register this device with your phone number.", id="register-title")
            yield Input(
                placeholder="Phone number with country code, e.g. +4915112345678", id="phone"
            )
            yield Static("", id="register-hint")
            yield Input(placeholder="Code from the SMS", id="code", disabled=True)
            yield Static("", id="register-error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#phone", Input).focus()

    @on(Input.Submitted, "#phone")
    def _phone_entered(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self._request_code(event.value.strip())

    @on(Input.Submitted, "#code")
    def _code_entered(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self._register(event.value.strip())

    def _error(self, text: str) -> None:
        self.query_one("#register-error", Static).update(Content(text))

    @work(exclusive=True, group="register")
    async def _request_code(self, phone: str) -> None:
        self._error("")
        try:
            lifetime = await self.client.request_code(phone)
        except (RelayError, httpx.HTTPError) as exc:
            self._error(registration_error_text(exc))
            return
        self.phone = phone
        self.attempts = CodeAttempts()
        self.query_one("#register-hint", Static).update(Content(code_sent_text(phone, lifetime)))
        code = self.query_one("#code", Input)
        code.disabled = False
        code.focus()

    @work(exclusive=True, group="register")
    async def _register(self, code: str) -> None:
        self._error("")
        try:
            await self.client.register(self.phone, code, self.device_name)
        except (httpx.HTTPError, CryptoError) as exc:
            self._error(registration_error_text(exc))  # the same code may be entered again
            return
        except RelayError as exc:
            field = self.query_one("#code", Input)
            field.clear()
            left = self.attempts.retry(exc)
            if left:
                self._error(code_retry_text(left))  # the code sent stays valid
                return
            field.disabled = True
            self.query_one("#phone", Input).focus()
            self._error(registration_error_text(exc, new_code=NEW_CODE))
            return
        self.dismiss(True)


class ChatApp(App[None]):
    """``tresen chat``: the chat list, the open chat and an input line."""

    TITLE = "Tresen"
    CSS = """
    #main { height: 1fr; }
    #sidebar { width: 32; border-right: solid $primary-background; }
    #chats-title { height: 1; padding: 0 1; text-style: bold; background: $boost; }
    #chat { width: 1fr; }
    #chat-title { height: 1; padding: 0 1; text-style: bold; background: $boost; }
    #banner {
        display: none; padding: 0 1; color: $text; background: $error; text-style: bold;
    }
    #messages { height: 1fr; padding: 0 1; }
    #messages > .incoming { padding-right: 12; }
    #messages > .outgoing { padding-left: 12; text-align: right; }
    #messages > .failed { color: $warning; text-style: bold; }
    #messages > .waiting { color: $text-muted; text-style: italic; }
    #messages > .notice { color: $text-muted; text-style: italic; }
    #messages > .warning { color: $error; text-style: bold; }
    #messages > .error { color: $error; }
    #feedback { height: auto; max-height: 70%; padding: 0 1; color: $text-muted; }
    #register { padding: 1 2; }
    #register > Static { margin: 1 0 0 0; }
    #register-error { color: $error; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit"),
        Binding("ctrl+l", "focus_chats", "Chats"),
        Binding("escape", "focus_input", "Input", show=False),
    ]

    def __init__(
        self, client: Client, *, device_name: str | None = None, clock: Clock | None = None
    ) -> None:
        super().__init__()
        self.model = ChatModel(client, clock=clock)
        self.device_name = device_name
        self._typed: asyncio.Queue[str] = asyncio.Queue()
        self._rows: list[ChatRow] = []
        self._shown: tuple[str | None, list[ChatLine]] = (None, [])
        self._closing_down = False
        self._refreshing = asyncio.Lock()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="sidebar"):
                yield Static("Chats", id="chats-title")
                yield ListView(id="chats", initial_index=None)
            with Vertical(id="chat"):
                yield Static("No chat open", id="chat-title")
                yield Static("", id="banner")
                yield VerticalScroll(id="messages")
        yield Static(COMMANDS_HELP, id="feedback")
        yield Input(
            placeholder="Message, or /new +49…  /find …  /name …  /consents  /block  /help",
            id="input",
        )
        yield Footer()

    async def on_mount(self) -> None:
        if self.model.client.registered:
            await self._begin()
        else:
            await self.push_screen(
                RegisterScreen(self.model.client, self.device_name), self._registered
            )

    async def _registered(self, done: bool | None) -> None:
        if done:
            client = self.model.client
            self.model.feedback = (
                f"Registered {client.phone}. {operator_key_text(client.operator_fingerprint)}"
            )
            await self._begin()

    async def _begin(self) -> None:
        self.model.client.start()
        self.run_worker(self._take_events(), name="events", group="events")
        self.run_worker(self._take_input(), name="input", group="input")
        self.query_one("#input", Input).focus()
        await self.model.start()
        await self.refresh_views()

    async def _take_events(self) -> None:
        async for event in self.model.client.events():
            await self.model.handle(event)
            if isinstance(event, TypingStarted):
                # "typing…" goes when its time is up, even if nothing else happens.
                left_ms = event.until_ms - self.model.clock.now_ms()
                self.set_timer(max(0, left_ms) / 1000 + 0.05, self.refresh_views)
            await self.refresh_views()

    async def _take_input(self) -> None:
        # One line after the other: "/new +49…" then "hello" goes to the new chat.
        while True:
            line = await self._typed.get()
            if not await self.model.submit(line):
                self.exit()
                return
            await self.refresh_views()

    @on(Input.Submitted, "#input")
    def _typed_line(self, event: Input.Submitted) -> None:
        self._typed.put_nowait(event.value)
        event.input.clear()

    @on(ListView.Selected, "#chats")
    def _chat_selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, ChatItem):
            self._typed.put_nowait(f"/open {event.item.row.account_id}")
        self.query_one("#input", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("focus_chats", "focus_input"):
            return not isinstance(self.screen, RegisterScreen)  # no chats before registering
        return True

    def action_focus_chats(self) -> None:
        self.query_one("#chats", ListView).focus()

    def action_focus_input(self) -> None:
        self.query_one("#input", Input).focus()

    async def refresh_views(self) -> None:
        try:
            # One at a time: the events and the input both refresh, and two rebuilds of the
            # chat pane interleaved would mount both sets of lines.
            async with self._refreshing:
                await self._refresh_views()
        except NoMatches:
            # An event or timer after /quit, or a refresh still under way when the app is shut
            # down (a test ending right after registering): its widgets are gone.
            if not (self._closing_down or not self.is_running):
                raise

    def exit(
        self, result: None = None, return_code: int = 0, message: RenderableType | None = None
    ) -> None:
        self._closing_down = True
        super().exit(result, return_code, message)

    async def _refresh_views(self) -> None:
        model = self.model
        state = "connected" if model.connected else "connecting…"
        self.sub_title = f"{model.client.phone or ''} · {state}"
        self.query_one("#feedback", Static).update(Content(model.feedback or COMMANDS_HELP))
        rows = model.chat_rows()
        self.query_one("#chats-title", Static).update(Content(model.chats_heading(rows)))
        await self._show_chats(rows)
        await self._show_chat(model.open_chat)

    async def _show_chats(self, rows: list[ChatRow]) -> None:
        chats = self.query_one("#chats", ListView)
        rebuilt = rows != self._rows
        if rebuilt:
            self._rows = rows
            await chats.clear()
            await chats.extend([ChatItem(row) for row in rows])
        ids = [row.account_id for row in rows]
        if self.model.open_chat in ids:
            chats.index = ids.index(self.model.open_chat)
        elif rebuilt and rows:
            chats.index = 0

    async def _show_chat(self, account_id: str | None) -> None:
        title = self.query_one("#chat-title", Static)
        banner = self.query_one("#banner", Static)
        if account_id is None:
            title.update(Content("No chat open: type /new +49… or pick one on the left"))
            banner.display = False
            return
        title.update(Content(self.model.heading(account_id)))
        warning = self.model.warning(account_id)
        banner.display = warning is not None
        banner.update(Content(f"⚠ {warning}" if warning else ""))
        lines = self.model.lines(account_id)
        if (account_id, lines) == self._shown:
            return
        self._shown = (account_id, lines)
        messages = self.query_one("#messages", VerticalScroll)
        now_ms = self.model.clock.now_ms()
        await messages.remove_children()
        await messages.mount_all([LineView(line, now_ms) for line in lines])
        # Anchored, the newest line stays in view when the hint bar above the input grows
        # (a /help, a /find) or the terminal shrinks, until the user scrolls up.
        messages.anchor()

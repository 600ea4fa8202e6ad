"""What the terminal app knows and shows, apart from any widget: its chats with their unread
counts, the open chat's lines, the connection state and the answer to the last command.

Messages and statuses live in the client's store; the model adds what only the app knows:
the open chat, chats opened but still empty, lines a command showed (notices), template
renderings and the peer's "typing…". The ``/…`` commands are in :mod:`.commands`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import defaultdict
from dataclasses import dataclass

import httpx

from tresen.client.api import RelayError
from tresen.client.app.commands import Commands
from tresen.client.app.files import Files, Opener, system_opener
from tresen.client.business import Business, BusinessSummary
from tresen.client.consent import BusinessConsents
from tresen.client.contacts import AddressBook
from tresen.client.events import (
    Connected,
    ConsentChanged,
    DecryptionFailed,
    DeviceAdded,
    Disconnected,
    Event,
    IdentityChanged,
    KeyTransparencyFailed,
    MessageEvent,
    TypingStarted,
)
from tresen.client.presentation import (
    APP_HINTS,
    ChatLine,
    LineKind,
    business_check_failed_text,
    business_label,
    chat_lines,
    choice_hint,
    device_added_text,
    identity_text,
    is_template_rejection,
    key_log_text,
    unread_text,
)
from tresen.client.sdk import Client
from tresen.client.store import Trust
from tresen.client.templates import TemplateRejected, check_template_message
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.crypto import CryptoError
from tresen.wire.e2e import Template, decode_payload
from tresen.wire.templates import RenderedTemplate

__all__ = ["ChatModel", "ChatRow"]

log = get_logger("tresen.client.app")


@dataclass(frozen=True, slots=True)
class ChatRow:
    """One chat in the list. ``label`` marks a business chat ("Business", with "✓ verified"
    only when this device checked the operator's certificate)."""

    account_id: str
    title: str
    unread: int
    last_ms: int
    label: str | None = None
    warning: bool = False
    business: bool = False
    verified: bool = False
    blocked: bool = False


class ChatModel:
    """The app's state and actions, apart from any widget."""

    def __init__(
        self, client: Client, *, clock: Clock | None = None, opener: Opener | None = None
    ) -> None:
        self.client = client
        self.clock: Clock = clock or client.clock
        self.contacts = AddressBook(client.store, self.clock)
        self.open_chat: str | None = None
        self.connected = False
        self.feedback = ""
        self.found: list[BusinessSummary] = []  # the last /find, for /new 1, /new 2, …
        self.consent_list: list[BusinessConsents] = []  # the last /consents, for /revoke 1, …
        self.blocked: set[str] = set()  # accounts this account blocked, as last learned
        self.rendered: dict[str, RenderedTemplate] = {}  # template messages, by message id
        self._opened: dict[str, int] = {}
        # Lines commands and events added to a chat, each with the chat's last message id
        # at the time, so that a notice stays after what it answers.
        self._notices: defaultdict[str, list[tuple[str | None, ChatLine]]] = defaultdict(list)
        self._checked: set[str] = set()  # businesses checked since the app started
        self._rejected: dict[str, str] = {}  # message id → why a template message was refused
        self._typing: dict[str, int] = {}  # chat → until when its peer shows as typing
        self.files = Files(self, opener or system_opener)
        self.commands = Commands(self)

    # --- what the app shows ------------------------------------------------------------------

    def chat_rows(self) -> list[ChatRow]:
        """The chats, newest first."""
        rows: dict[str, ChatRow] = {}
        for chat in self.client.store.chats():
            if not chat.account_id or chat.account_id == self.client.account_id:
                continue  # handled system messages, and our own account's
            rows[chat.account_id] = self._row(chat.account_id, chat.last_ms, chat.unread)
        for account_id, opened_ms in self._opened.items():
            if account_id not in rows:
                rows[account_id] = self._row(account_id, opened_ms, 0)
        return sorted(rows.values(), key=lambda row: row.last_ms, reverse=True)

    def _row(self, account_id: str, last_ms: int, unread: int) -> ChatRow:
        known = self.client.known_business(account_id)
        return ChatRow(
            account_id,
            self.title(account_id),
            unread,
            last_ms,
            label=business_label(known),
            warning=self.client.trust_of(account_id) is not Trust.TRUSTED,
            business=known is not None,
            verified=known is not None and known.verified,
            blocked=account_id in self.blocked,
        )

    def chats_heading(self, rows: list[ChatRow]) -> str:
        """Over the chat list: ``Chats · 3 unread``."""
        unread = unread_text(sum(row.unread for row in rows))
        return f"Chats · {unread}" if unread else "Chats"

    def title(self, account_id: str) -> str:
        """A business's name once checked, a name saved for the number, the number, else
        the account id."""
        return self.contacts.title(account_id)

    def label(self, account_id: str) -> str | None:
        return business_label(self.client.known_business(account_id))

    def heading(self, account_id: str) -> str:
        """The open chat's title bar: the number stays beside a saved or business name, so a
        name alone (that anyone can register unverified) never stands for the chat."""
        title = self.title(account_id)
        label = self.label(account_id)
        phone = self.client.store.peer_phone(account_id)
        parts = [title] if label is None else [title, label]
        if phone and phone != title:
            parts.append(phone)
        heading = " · ".join(parts)
        if account_id in self.blocked:
            heading += " · blocked (/unblock)"
        if self.typing(account_id):
            heading += " · typing…"
        return heading

    def typing(self, account_id: str) -> bool:
        """Whether the chat's peer is typing: for 25 s after it said so, or until its next
        message."""
        until = self._typing.get(account_id)
        if until is None:
            return False
        if self.clock.now_ms() >= until:
            del self._typing[account_id]
            return False
        return True

    def typing_until(self, account_id: str) -> int | None:
        return self._typing.get(account_id) if self.typing(account_id) else None

    def warning(self, account_id: str) -> str | None:
        """The banner over a chat whose peer's identity keys changed."""
        trust = self.client.trust_of(account_id)
        if trust is Trust.CHANGED:
            return identity_text(self.title(account_id), APP_HINTS)
        if trust is Trust.KEY_TRANSPARENCY:
            return key_log_text(self.title(account_id), APP_HINTS)
        return None

    def lines(self, account_id: str) -> list[ChatLine]:
        """The chat's messages, oldest first, with the lines commands added in between."""
        stored = self.client.store.messages(account_id)
        shown = chat_lines(stored, self.title(account_id), self.rendered, self._rejected)
        placed: list[tuple[int, float, ChatLine]] = []
        for position, line in enumerate(shown):
            if line.choices:
                hint = choice_hint(line.choices)
                line = dataclasses.replace(line, marker=f"{line.marker} · {hint}")
            placed.append((line.at_ms, position, line))
        positions = {message.message_id: position for position, message in enumerate(stored)}
        for after, line in self._notices.get(account_id, []):
            # Within one millisecond, a notice comes right after the message it followed.
            placed.append((line.at_ms, positions.get(after or "", -1) + 0.5, line))
        placed.sort(key=lambda item: item[:2])
        return [line for _, _, line in placed]

    def note(self, account_id: str, kind: LineKind, text: str) -> None:
        """Add a line to a chat, after its last message (a notice answers what was there when
        it was written: the text STOP, say), even when the relay's clock is ahead of ours."""
        last = self.client.store.messages(account_id, limit=1)
        at_ms = max([self.clock.now_ms(), *(m.server_ms for m in last)])
        after = last[0].message_id if last else None
        self._notices[account_id].append((after, ChatLine(kind, text, at_ms)))

    # --- actions -----------------------------------------------------------------------------

    async def submit(self, line: str) -> bool:
        """Run a command or send a text to the open chat; False when the app should quit."""
        return await self.commands.submit(line)

    async def start(self) -> None:
        """Learn the phone numbers of chats that only have an account id so far, the names
        and ticks of business chats never checked, the blocked accounts and the renderings
        of stored template messages."""
        await self._learn_blocked()
        for chat in self.client.store.chats():
            if chat.account_id and chat.phone is None:
                await self.learn_phone(chat.account_id)
            if chat.business:
                await self._first_check(chat.account_id)
                await self._render_templates(chat.account_id)

    async def open(self, peer: str) -> None:
        """Open the chat with a phone number, an account id or the number of a ``/find`` hit,
        and mark its messages read. A business is checked again, so its tick is current."""
        if peer.isdigit() and 1 <= int(peer) <= len(self.found):
            peer = self.found[int(peer) - 1].account_id
        account_id = await self.client.resolve(peer)
        if account_id == self.client.account_id:
            self.feedback = "That is your own number."
            return
        await self.learn_phone(account_id)
        self.open_chat = account_id
        self._opened.setdefault(account_id, self.clock.now_ms())
        await self.mark_read(account_id)
        if self.client.is_business(account_id):
            await self.check_business(account_id)
            await self._render_templates(account_id)

    async def mark_read(self, account_id: str) -> None:
        try:
            await self.client.mark_read(account_id)
        except (RelayError, httpx.HTTPError) as exc:
            log.warning("marking messages read failed", error=str(exc))

    async def learn_phone(self, account_id: str) -> None:
        if self.client.store.peer_phone(account_id) is None:
            # Unreachable relay: shown by account id until the next event asks again.
            with contextlib.suppress(httpx.HTTPError):
                await self.client.phone_of(account_id)

    async def _learn_blocked(self) -> None:
        try:
            self.blocked = set(await self.client.blocked())
        except (RelayError, httpx.HTTPError) as exc:
            log.warning("listing blocked accounts failed", error=str(exc))

    async def _render_templates(self, account_id: str) -> None:
        """Render the chat's stored template messages from their operator-signed templates
        (kept by the client's template book, fetched once), checked as on arrival."""
        for message in self.client.store.messages(account_id):
            if message.payload is None or message.message_id in self.rendered:
                continue
            try:
                payload = decode_payload(message.payload)
            except ValueError:
                continue
            if isinstance(payload, Template):
                await self._render(message.message_id, payload, message.sender_account)

    async def _render(self, message_id: str, payload: Template, sender: str) -> None:
        try:
            template = await self.client.templates.template(int(payload.template_id))
            rendered = check_template_message(template, payload, sender=sender, template_ref=None)
        except (TemplateRejected, RelayError, httpx.HTTPError, CryptoError) as exc:
            log.warning(
                "rendering a template message failed", message_id=message_id, error=str(exc)
            )
            return
        self.rendered[message_id] = rendered

    async def check_business(self, account_id: str) -> Business | None:
        """Fetch the business and decide its tick; on failure say why in ``feedback``."""
        try:
            business = await self.client.business(account_id)
        except (RelayError, httpx.HTTPError, CryptoError) as exc:
            self.feedback = business_check_failed_text(self.title(account_id), exc)
            return None
        finally:
            self._checked.add(account_id)
        return business

    async def _first_check(self, account_id: str) -> None:
        """Check a business chat once if it was never checked (a first message from it), so
        its name and tick join the label; failures only keep the plain label."""
        if account_id in self._checked:
            return
        self._checked.add(account_id)
        known = self.client.known_business(account_id)
        if known is None or known.checked_ms:
            return
        try:
            await self.client.business(account_id)
        except (RelayError, httpx.HTTPError, CryptoError) as exc:
            log.warning("checking a business failed", account_id=account_id, error=str(exc))

    # --- events of the client ----------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        """Take in one event of the client."""
        try:
            await self._handle(event)
        except (RelayError, httpx.HTTPError, CryptoError) as exc:
            log.warning("handling an event failed", kind=type(event).__name__, error=str(exc))

    async def _handle(self, event: Event) -> None:
        if isinstance(event, TypingStarted):
            self._typing[event.chat] = event.until_ms
        elif isinstance(event, MessageEvent):
            if not event.outgoing:
                self._typing.pop(event.chat, None)  # the answer it was typing is here
            if event.template is not None:
                self.rendered[event.message_id] = event.template
            elif isinstance(event.payload, Template):  # sent by another of our devices
                await self._render(event.message_id, event.payload, event.sender)
            await self.learn_phone(event.chat)
            if self.client.is_business(event.chat):
                await self._first_check(event.chat)
            if event.chat == self.open_chat and not event.outgoing:
                await self.mark_read(event.chat)  # the user is looking at it
        elif isinstance(event, IdentityChanged):
            await self.learn_phone(event.account_id)
            who = self.title(event.account_id)
            self.note(event.account_id, LineKind.WARNING, f"⚠ The security keys of {who} changed.")
        elif isinstance(event, KeyTransparencyFailed):
            await self.learn_phone(event.account_id)
            who = self.title(event.account_id)
            self.note(
                event.account_id,
                LineKind.WARNING,
                f"⚠ The relay's key log does not confirm the security keys of {who}.",
            )
        elif isinstance(event, DecryptionFailed):
            if is_template_rejection(event.reason):
                # The store keeps only the reason; the kind says whether it was reported.
                self._rejected[event.message_id] = event.reason
            await self.learn_phone(event.sender)
        elif isinstance(event, ConsentChanged):
            # A STOP or START typed to a business: confirmed (or not) in its chat.
            kind = LineKind.NOTICE if event.failed is None else LineKind.ERROR
            self.note(event.business, kind, event.confirmation)
        elif isinstance(event, DeviceAdded):
            if event.account_id == self.client.account_id:
                self.feedback = "A new device was added to your account."
            else:
                await self.learn_phone(event.account_id)
                who = self.title(event.account_id)
                self.note(event.account_id, LineKind.NOTICE, device_added_text(who))
        elif isinstance(event, Connected):
            self.connected = True
        elif isinstance(event, Disconnected):
            self.connected = False

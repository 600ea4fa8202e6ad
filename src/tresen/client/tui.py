"""The customer's terminal app: chats on the left, the open chat on the right, input below.

:class:`ChatModel` is what the app knows and does (its chats, their lines and ticks, the
commands, the client's events) without any widget, so it is tested without a terminal;
:class:`ChatApp` (Textual) only shows the model and feeds it what the user types and what
the client reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

import httpx
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, ListItem, ListView, Static

from tresen.client.api import RelayError
from tresen.client.business import Business, BusinessSummary
from tresen.client.choices import (
    Choice,
    interactive_choices,
    interactive_text,
    pick,
    quick_reply_choices,
    template_text,
)
from tresen.client.consent import ALL_SCOPES, BusinessConsents, ConsentRecord, ConsentScope
from tresen.client.events import (
    Connected,
    ConsentChanged,
    DecryptionFailed,
    DeviceAdded,
    Disconnected,
    Event,
    IdentityChanged,
    MessageEvent,
    TypingStarted,
)
from tresen.client.sdk import Client, IdentityNotTrusted
from tresen.client.store import MessageStatus, StoredMessage, Trust
from tresen.client.templates import TemplateRejected, check_template_message
from tresen.core.errors import ErrorCode
from tresen.core.logging import get_logger
from tresen.crypto import CryptoError
from tresen.wire.e2e import (
    ButtonReply,
    Interactive,
    InteractiveKind,
    InteractiveReply,
    Media,
    Reaction,
    Template,
    Text,
    Unsupported,
    decode_payload,
)
from tresen.wire.templates import RenderedTemplate

__all__ = [
    "COMMANDS_HELP",
    "HELP",
    "REPORT_REASONS",
    "ChatApp",
    "ChatLine",
    "ChatModel",
    "ChatRow",
    "LineKind",
    "RegisterScreen",
    "consent_summary",
    "describe",
    "profile_lines",
    "relay_error_text",
    "template_marker",
]

log = get_logger("tresen.client.tui")

COMMANDS_HELP = (
    "/new +49… opens a chat · /find bakery searches businesses · /consents: who may write to "
    "you · /block · /report · /help lists every command · /quit"
)
HELP = "\n".join(
    (
        "/new +49… (or /new 1 after /find) opens a chat · /find bakery searches businesses",
        "/profile a business's profile · /safety the safety number · /trust accepts changed "
        "keys · /operator the operator key",
        "/consents who may write to you · /revoke [1] withdraws all of a business's consent · "
        "/optin, /optout [marketing|utility] in its chat",
        "/block, /unblock the open chat · /report spam|offensive|scam|unwanted|other [block]",
        "/choose 2 answers the chat's latest buttons, list or quick replies with option 2",
        "STOP or START typed to a business ends or resumes its offers · //text sends “/text” "
        "· /quit",
    )
)
REPORT_REASONS = ("spam", "offensive", "scam", "unwanted", "other")

BUSINESS_LABEL = "Business"
FIND_LIMIT = 10  # /find answers in the feedback line under the chat; more would push it away
VERIFIED_LABEL = "✓ verified"

# The directory's category codes (those of the WhatsApp Cloud API profile), as people say them.
_CATEGORIES = {
    "AUTO": "Automotive",
    "BEAUTY": "Beauty, spa and salon",
    "APPAREL": "Clothing and apparel",
    "EDU": "Education",
    "ENTERTAIN": "Entertainment",
    "EVENT_PLAN": "Event planning and service",
    "FINANCE": "Finance and banking",
    "GROCERY": "Food and grocery",
    "GOVT": "Public service",
    "HOTEL": "Hotel and lodging",
    "HEALTH": "Medical and health",
    "NONPROFIT": "Non-profit organisation",
    "PROF_SERVICES": "Professional services",
    "RETAIL": "Shopping and retail",
    "TRAVEL": "Travel and transportation",
    "RESTAURANT": "Restaurant",
    "OTHER": "Other",
}


def category_name(code: str) -> str:
    return _CATEGORIES.get(code, code.replace("_", " ").capitalize())


def operator_key_text(fingerprint: str | None) -> str:
    """What the user should know about the operator key this device pinned."""
    if fingerprint is None:
        return (
            "No operator key is pinned on this device, so no business can show a ✓ here. "
            "Register in a new data folder with your operator's key (--operator-key)."
        )
    return (
        f"Operator key fingerprint: {fingerprint}. Compare it with the one your operator "
        "publishes: if they differ, a ✓ on this device does not come from your operator."
    )


def profile_lines(business: Business, now_ms: int) -> list[str]:
    """A business's profile as the lines ``/profile`` shows: the name with the tick (or why
    there is none), what it says about itself, how to reach it and when it is open."""
    profile = business.profile
    if business.verified:
        lines = [f"{profile.display_name} ✓ {business.tick.reason}"]
    else:
        lines = [f"{profile.display_name} · {BUSINESS_LABEL}, no tick: {business.tick.reason}"]
    lines += [text for text in (profile.about, profile.description) if text]
    details = (
        ("Category", category_name(profile.category) if profile.category else ""),
        ("Address", profile.address),
        ("E-mail", profile.email),
        ("Websites", ", ".join(profile.websites)),
        ("Phone", business.phone),
    )
    lines += [f"{name}: {value}" for name, value in details if value]
    lines.append(profile.opening_status(now_ms))
    if profile.has_hours:
        lines.append(f"Opening hours ({profile.timezone}):")
        lines += profile.hours_lines()
    return lines


def identity_warning(who: str) -> str:
    return (
        f"The security keys of {who} changed. They may have reinstalled Tresen, or someone may "
        "be intercepting this chat. Sending is paused: compare the safety number (/safety) "
        "with them in person or on a call, and if it matches, type /trust."
    )


# What each consent scope lets a business send, in the customer's words.
_SCOPE_WORDS = {
    ConsentScope.UTILITY: "utility messages (order updates, codes)",
    ConsentScope.MARKETING: "marketing messages (offers)",
}


def scope_words(scopes: tuple[str, ...]) -> str:
    if set(scopes) >= set(ALL_SCOPES):
        return "all messages (order updates, codes and offers)"
    return " and ".join(_SCOPE_WORDS[ConsentScope(s)] for s in scopes)


def _consent_state(scope: str, record: ConsentRecord, business: str) -> str:
    on = "on" if record.opted_in else "off"
    if record.source == "customer":
        return f"{scope} {on} (you {'agreed' if record.opted_in else 'withdrew'})"
    evidence = f": {record.evidence}" if record.evidence else ""
    return f"{scope} {on} ({business} says{evidence})"


def consent_summary(line: BusinessConsents, name: str) -> str:
    """The scopes of one business on the consent dashboard, e.g. ``utility on (you agreed) ·
    marketing off (you withdrew)``."""
    return " · ".join(
        _consent_state(str(scope), line.consents[scope], name)
        for scope in ALL_SCOPES
        if scope in line.consents
    )


def relay_error_text(exc: RelayError, who: str, unblock_hint: str = "type /unblock") -> str:
    """A relay's refusal as a short sentence for the person who sent (``who``: the other
    side); codes without a sentence of their own keep the relay's message and code."""
    seconds = -(-int(exc.details.get("retry_after_ms") or 1000) // 1000)
    sentences: dict[int, str] = {
        ErrorCode.BLOCKED_BY_YOU: f"you blocked {who}; {unblock_hint} to write again",
        ErrorCode.REENGAGEMENT: f"more than 24 hours have passed since {who} last wrote to "
        "you; only an approved template can reach them now",
        ErrorCode.MARKETING_STOPPED: f"{who} has not agreed to these messages from you",
        ErrorCode.SPAM_RATE_LIMITED: "your limit of new customers for 24 hours is used up",
        ErrorCode.PAIR_RATE_LIMITED: f"too many messages to {who} in a short time; try again "
        f"in {seconds} s",
        ErrorCode.THROUGHPUT_REACHED: f"too many messages at once; try again in {seconds} s",
        ErrorCode.REQUEST_RATE_LIMITED: "you are sending too fast; wait a moment",
        ErrorCode.TEMPLATE_NOT_FOUND: "that template is not approved for you",
        ErrorCode.TEMPLATE_PAUSED: "the template is paused: customers blocked or reported it",
        ErrorCode.TEMPLATE_DISABLED: "the template is disabled because of its low quality",
        ErrorCode.TEMPLATE_PARAMS_MISMATCH: "the parameters do not fit the template",
    }
    return sentences.get(exc.code) or f"{exc.message} (code {exc.code})"


def template_marker(rendered: RenderedTemplate) -> str:
    return f"template · {str(rendered.category).lower()}"


def _choice_marker(kind: str, choices: list[Choice]) -> str:
    last = len(choices)
    return f"{kind} · /choose 1" + (f"…{last}" if last > 1 else "")


# DecryptionFailed reasons of a template message the client refused (client/templates.py).
_TEMPLATE_REJECTIONS = {
    "template_mismatch": "does not match the template your operator approved ({}); it was "
    "reported to your operator",
    "template_unavailable": "could not be checked ({}), so it is not shown",
    "template_rejected": "was refused ({})",
}


def failure_text(who: str, reason: str) -> str:
    """The line for a message that is not shown: a refused template message, or one that
    could not be decrypted."""
    kind, _, detail = reason.partition(": ")
    if kind in _TEMPLATE_REJECTIONS:
        return f"⚠ A template message from {who} " + _TEMPLATE_REJECTIONS[kind].format(detail)
    if kind == "class_mismatch":
        return (
            f"⚠ A message from {who} is not shown: it came as a system message, which only "
            f"“typing…” may be ({detail}); it was reported to your operator."
        )
    return f"⚠ A message from {who} could not be decrypted ({reason})."


class LineKind(StrEnum):
    MESSAGE = "message"
    FAILED = "failed"  # a message that could not be decrypted
    NOTICE = "notice"  # what a command showed, e.g. the safety number
    WARNING = "warning"  # changed identity keys, a message not sent
    ERROR = "error"


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


@dataclass(frozen=True, slots=True)
class ChatLine:
    kind: LineKind
    text: str
    at_ms: int
    outgoing: bool = False
    message_id: str | None = None
    status: MessageStatus | None = None
    marker: str | None = None  # e.g. "template · utility": shown small above the text

    @property
    def ticks(self) -> str:
        """✓ sent, ✓✓ delivered, ✓✓ read (shown in another colour), ✗ not delivered (the
        relay gave up: it reached none of the recipient's devices); only on outgoing lines."""
        if not self.outgoing:
            return ""
        if self.status is MessageStatus.SENT:
            return "✓"
        if self.status in (MessageStatus.DELIVERED, MessageStatus.READ):
            return "✓✓"
        if self.status is MessageStatus.FAILED:
            return "✗ not delivered"
        return ""


def describe(payload: object, quoted: str | None = None) -> str:
    """One line of text for a message payload; ``quoted`` is the text it reacts to."""
    if isinstance(payload, Text):
        return payload.text
    if isinstance(payload, Reaction):
        target = f" to “{_shorten(quoted)}”" if quoted else ""
        return f"reacted {payload.emoji}{target}" if payload.emoji else "removed a reaction"
    if isinstance(payload, Media):
        caption = f": {payload.caption}" if payload.caption else ""
        return f"[{payload.kind} attachment{caption}] (attachments come in a later version)"
    if isinstance(payload, Interactive):
        return interactive_text(payload)
    if isinstance(payload, InteractiveReply):
        return f"↩ {payload.title}"
    if isinstance(payload, ButtonReply):
        return f"↩ {payload.text}"
    if isinstance(payload, Template):
        return f"[template {payload.name}]"
    if isinstance(payload, Unsupported):
        return "This message needs a newer version of Tresen."
    return f"[{type(payload).__name__}]"


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ChatModel:
    """The app's state and actions, apart from any widget.

    Messages and statuses live in the client's store; the model adds what only the app knows:
    the open chat, chats opened but still empty, lines a command showed, the connection state
    and the answer to the last command (``feedback``).
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.open_chat: str | None = None
        self.connected = False
        self.feedback = ""
        self.found: list[BusinessSummary] = []  # the last /find, for /new 1, /new 2, …
        self.consent_list: list[BusinessConsents] = []  # the last /consents, for /revoke 1, …
        self.blocked: set[str] = set()  # accounts this account blocked, as last learned
        self._opened: dict[str, int] = {}
        # Lines commands and events added to a chat, each with the chat's last message id
        # at the time, so that a notice stays after what it answers.
        self._notices: defaultdict[str, list[tuple[str | None, ChatLine]]] = defaultdict(list)
        self._checked: set[str] = set()  # businesses checked since the app started
        # Template messages as their operator-signed template renders them, by message id.
        self._rendered: dict[str, RenderedTemplate] = {}
        self._rejected: dict[str, str] = {}  # message id → why a template message was refused
        self._typing: dict[str, int] = {}  # chat → until when its peer shows as typing

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
            label=self.label(account_id),
            warning=self.client.trust_of(account_id) is Trust.CHANGED,
            business=known is not None,
            verified=known is not None and known.verified,
            blocked=account_id in self.blocked,
        )

    def title(self, account_id: str) -> str:
        """A business's name once checked, else the phone number, else the account id."""
        known = self.client.known_business(account_id)
        if known is not None and known.display_name:
            return known.display_name
        return self.client.store.peer_phone(account_id) or account_id

    def label(self, account_id: str) -> str | None:
        """``Business``, ``Business ✓ verified`` or nothing (a personal chat).

        Only the client's own check of the operator's certificate earns the tick, never the
        relay's word that a business is verified.
        """
        known = self.client.known_business(account_id)
        if known is None:
            return None
        return f"{BUSINESS_LABEL} {VERIFIED_LABEL}" if known.verified else BUSINESS_LABEL

    def heading(self, account_id: str) -> str:
        """The open chat's title bar: a business chat adds its label and phone number, so a
        name alone (that anyone can register unverified) never stands for the business."""
        title = self.title(account_id)
        label = self.label(account_id)
        blocked = " · blocked (/unblock)" if account_id in self.blocked else ""
        if self.typing(account_id):
            blocked += " · typing…"
        if label is None:
            return title + blocked
        phone = self.client.store.peer_phone(account_id)
        return f"{title} · {label}" + (f" · {phone}" if phone and phone != title else "") + blocked

    def typing(self, account_id: str) -> bool:
        """Whether the chat's peer is typing: for 25 s after it said so, or until its next
        message."""
        until = self._typing.get(account_id)
        if until is None:
            return False
        if self.client.clock.now_ms() >= until:
            del self._typing[account_id]
            return False
        return True

    def typing_until(self, account_id: str) -> int | None:
        return self._typing.get(account_id) if self.typing(account_id) else None

    def warning(self, account_id: str) -> str | None:
        """The banner over a chat whose peer's identity keys changed."""
        if self.client.trust_of(account_id) is Trust.CHANGED:
            return identity_warning(self.title(account_id))
        return None

    def lines(self, account_id: str) -> list[ChatLine]:
        """The chat's messages, oldest first, with the lines commands added in between."""
        stored = self.client.store.messages(account_id)
        texts: dict[str, str] = {}
        placed: list[tuple[int, float, ChatLine]] = []
        for position, message in enumerate(stored):
            line = self._line(message, texts)
            placed.append((line.at_ms, position, line))
            if line.message_id is not None and line.kind is LineKind.MESSAGE:
                texts[line.message_id] = line.text
        positions = {message.message_id: position for position, message in enumerate(stored)}
        for after, line in self._notices.get(account_id, []):
            # Within one millisecond, a notice comes right after the message it followed.
            placed.append((line.at_ms, positions.get(after or "", -1) + 0.5, line))
        placed.sort(key=lambda item: item[:2])
        return [line for _, _, line in placed]

    def _line(self, message: StoredMessage, texts: dict[str, str]) -> ChatLine:
        # A sent message that failed is still ours to show, with its failed tick.
        unreadable = message.status is MessageStatus.FAILED and not message.outgoing
        if unreadable or message.payload is None:
            reason = self._rejected.get(message.message_id) or message.error or "no content"
            return ChatLine(
                LineKind.FAILED,
                failure_text(self.title(message.chat), reason),
                message.server_ms,
                message_id=message.message_id,
            )
        try:
            payload = decode_payload(message.payload)
        except ValueError as exc:
            return ChatLine(LineKind.FAILED, f"⚠ An unreadable message ({exc}).", message.server_ms)
        quoted = texts.get(payload.message_id) if isinstance(payload, Reaction) else None
        text, marker = describe(payload, quoted), None
        if isinstance(payload, Template):
            rendered = self._rendered.get(message.message_id)
            # Only the signed template's rendering is ever shown; until it is at hand (the
            # template could not be fetched), the template's name stands in for it.
            text = text if rendered is None else template_text(rendered)
            marker = "template" if rendered is None else template_marker(rendered)
            quick = [] if rendered is None else quick_reply_choices(rendered)
            if quick and not message.outgoing:
                marker = _choice_marker(str(marker), quick)
        elif isinstance(payload, Interactive):
            kind = "buttons" if payload.type == InteractiveKind.BUTTON else "list"
            marker = (
                kind if message.outgoing else _choice_marker(kind, interactive_choices(payload))
            )
        return ChatLine(
            LineKind.MESSAGE,
            text,
            message.server_ms,
            outgoing=message.outgoing,
            message_id=message.message_id,
            status=message.status,
            marker=marker,
        )

    def _note(self, account_id: str, kind: LineKind, text: str) -> None:
        # After the chat's last message even when the relay's clock is ahead of this one's:
        # a notice answers what was there when it was written (the text STOP, say).
        last = self.client.store.messages(account_id, limit=1)
        at_ms = max([self.client.clock.now_ms(), *(m.server_ms for m in last)])
        after = last[0].message_id if last else None
        self._notices[account_id].append((after, ChatLine(kind, text, at_ms)))

    # --- actions -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Learn the phone numbers of chats that only have an account id so far, the names
        and ticks of business chats never checked, the blocked accounts and the renderings
        of stored template messages."""
        await self._learn_blocked()
        for chat in self.client.store.chats():
            if chat.account_id and chat.phone is None:
                await self._learn_phone(chat.account_id)
            if chat.business:
                await self._first_check(chat.account_id)
                await self._render_templates(chat.account_id)

    async def _learn_blocked(self) -> None:
        try:
            self.blocked = set(await self.client.blocked())
        except (RelayError, httpx.HTTPError) as exc:
            log.warning("listing blocked accounts failed", error=str(exc))

    async def _render_templates(self, account_id: str) -> None:
        """Render the chat's stored template messages from their operator-signed templates
        (kept by the client's template book, fetched once), checked as on arrival."""
        for message in self.client.store.messages(account_id):
            if message.payload is None or message.message_id in self._rendered:
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
        self._rendered[message_id] = rendered

    async def _learn_phone(self, account_id: str) -> None:
        if self.client.store.peer_phone(account_id) is None:
            # Unreachable relay: shown by account id until the next event asks again.
            with contextlib.suppress(httpx.HTTPError):
                await self.client.phone_of(account_id)

    async def submit(self, line: str) -> bool:
        """Run a command or send a text to the open chat; False when the app should quit."""
        text = line.strip()
        if not text:
            return True
        self.feedback = ""
        if text.startswith("/") and not text.startswith("//"):
            command, _, argument = text.partition(" ")
            return await self._command(command.lower(), argument.strip())
        await self.send(text[1:] if text.startswith("//") else text)
        return True

    async def _command(self, command: str, argument: str) -> bool:
        try:
            if command in ("/quit", "/exit", "/q"):
                return False
            if command in ("/new", "/open"):
                if not argument:
                    self.feedback = "Whom? Type /new and the phone number, e.g. /new +4915112345"
                else:
                    await self.open(argument)
            elif command in ("/profile", "/info"):
                await self.show_profile()
            elif command == "/find":
                await self.find(argument)
            elif command == "/operator":
                self.feedback = operator_key_text(self.client.operator_fingerprint)
            elif command == "/safety":
                await self.show_safety_number()
            elif command == "/trust":
                await self.trust()
            elif command == "/consents":
                await self.show_consents()
            elif command == "/revoke":
                await self.revoke(argument)
            elif command in ("/optin", "/optout"):
                await self.change_consent(command, argument)
            elif command == "/block":
                await self.block()
            elif command == "/unblock":
                await self.unblock()
            elif command == "/report":
                await self.report(argument)
            elif command == "/choose":
                await self.choose(argument)
            elif command == "/help":
                self.feedback = HELP
            else:
                self.feedback = f"Unknown command {command}. {COMMANDS_HELP}"
        except RelayError as exc:
            self.feedback = relay_error_text(exc, self._who(self.open_chat))
        except httpx.HTTPError:
            self.feedback = "The relay cannot be reached; try again in a moment."
        except CryptoError as exc:
            self.feedback = f"Encryption refused: {exc}"
        return True

    async def open(self, peer: str) -> None:
        """Open the chat with a phone number, an account id or the number of a ``/find`` hit,
        and mark its messages read. A business is checked again, so its tick is current."""
        if peer.isdigit() and 1 <= int(peer) <= len(self.found):
            peer = self.found[int(peer) - 1].account_id
        account_id = await self.client.resolve(peer)
        if account_id == self.client.account_id:
            self.feedback = "That is your own number."
            return
        await self._learn_phone(account_id)
        self.open_chat = account_id
        self._opened.setdefault(account_id, self.client.clock.now_ms())
        await self._mark_read(account_id)
        if self.client.is_business(account_id):
            await self._check_business(account_id)
            await self._render_templates(account_id)

    async def _check_business(self, account_id: str) -> Business | None:
        """Fetch the business and decide its tick; on failure say why in ``feedback``."""
        who = self.title(account_id)
        try:
            business = await self.client.business(account_id)
        except RelayError as exc:
            if exc.code == ErrorCode.UNDELIVERABLE:
                self.feedback = (
                    f"{who} is not (or no longer) a listed business: {exc.message}. "
                    "It shows no tick."
                )
            else:
                self.feedback = f"Could not check {who}: {exc.message} (code {exc.code})"
            return None
        except httpx.HTTPError:
            self.feedback = (
                f"Could not check {who}: the relay cannot be reached. The label is from the "
                "last check."
            )
            return None
        except CryptoError as exc:
            self.feedback = f"Could not check {who}: {exc}"
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

    async def show_profile(self) -> None:
        chat = self.open_chat
        if chat is None:
            self.feedback = "Open a chat first; /profile shows the profile of that business."
            return
        if not self.client.is_business(chat):
            self._note(
                chat,
                LineKind.NOTICE,
                f"{self.title(chat)} is a personal chat, not a business: there is no business "
                "profile. /safety shows its safety number.",
            )
            return
        business = await self._check_business(chat)
        if business is None:
            return
        for text in profile_lines(business, self.client.clock.now_ms()):
            self._note(chat, LineKind.NOTICE, text)

    async def find(self, query: str) -> None:
        """Search the business directory; the hits are numbered for ``/new 1``, ``/new 2``…"""
        self.found = await self.client.find_businesses(query, limit=FIND_LIMIT)
        if not self.found:
            self.feedback = (
                f"No business matches “{query}”." if query else "The directory is empty."
            )
            return
        lines = []
        for number, hit in enumerate(self.found, start=1):
            parts = [f"{number}. {hit.display_name}" + (" ✓" if hit.verified else "")]
            parts += [part for part in (category_name(hit.category), hit.about) if part]
            lines.append(" · ".join(parts) + f"  ({hit.account_id})")
        last = len(self.found)
        chosen = "/new 1" if last == 1 else f"/new 1 … /new {last}"
        lines.append(f"Open a chat with {chosen}. ✓: verified by your operator, checked here.")
        self.feedback = "\n".join(lines)

    def _who(self, account_id: str | None) -> str:
        return "them" if account_id is None else self.title(account_id)

    # --- consent -----------------------------------------------------------------------------

    async def show_consents(self) -> None:
        """The consent dashboard: every business with a consent on record, numbered for
        ``/revoke 1``, ``/revoke 2``…"""
        self.consent_list = await self.client.consents()
        if not self.consent_list:
            self.feedback = (
                "No business has your consent on record: businesses can only answer within 24 "
                "hours of your messages."
            )
            return
        lines = ["Businesses that may send you templates (on: may send, off: may not):"]
        for number, line in enumerate(self.consent_list, start=1):
            name = line.display_name or self.title(line.account_id)
            lines.append(f"{number}. {name} · {consent_summary(line, name)}")
        lines.append(
            "/revoke 1 withdraws all consent from a business · in its chat: /optin or /optout "
            "marketing|utility"
        )
        self.feedback = "\n".join(lines)

    async def _consent_business(self, argument: str, command: str) -> str | None:
        """The business a consent command is about: the open business chat, or the one
        ``argument`` names (its number or name on the last /consents, or its phone number)."""
        if not argument:
            chat = self.open_chat
            if chat is not None and self.client.is_business(chat):
                return chat
            self.feedback = (
                f"Open a business chat first, or name a business from /consents: {command} 1"
            )
            return None
        if argument.isdigit():
            if 1 <= int(argument) <= len(self.consent_list):
                return self.consent_list[int(argument) - 1].account_id
            self.feedback = f"There is no number {argument} on your /consents list."
            return None
        if argument.startswith("+"):
            return await self.client.resolve(argument)
        if not self.consent_list:
            self.consent_list = await self.client.consents()
        wanted = argument.casefold()
        named = [
            line for line in self.consent_list if (line.display_name or "").casefold() == wanted
        ] or [line for line in self.consent_list if wanted in (line.display_name or "").casefold()]
        if len(named) == 1:
            return named[0].account_id
        self.feedback = (
            f"“{argument}” names {'several' if named else 'no'} business(es) on your /consents "
            f"list; use its number, e.g. {command} 1."
        )
        return None

    async def revoke(self, argument: str) -> None:
        """Withdraw every consent of a business in one action (``Client.revoke_all``)."""
        business = await self._consent_business(argument, "/revoke")
        if business is None:
            return
        records = await self.client.revoke_all(business)
        who = next((r.business_name for r in records if r.business_name), self.title(business))
        text = (
            f"You withdrew all consent from {who}: no more order updates, codes or offers from "
            "it, unless you write to it (it may answer for 24 hours). /optin in its chat undoes "
            "this."
        )
        self._note(business, LineKind.NOTICE, text)
        if business != self.open_chat:
            self.feedback = text

    async def change_consent(self, command: str, argument: str) -> None:
        """``/optin`` or ``/optout`` for the open business chat, for one scope or both."""
        word = argument.lower()
        if word not in ("", "all", *ALL_SCOPES):
            self.feedback = (
                f"Which messages? {command} marketing (offers) or {command} utility (order "
                "updates, codes); without a word: both."
            )
            return
        chat = self.open_chat
        if chat is None or not self.client.is_business(chat):
            self.feedback = f"Open a business chat first; {command} is about that business."
            return
        scopes = tuple(str(s) for s in ALL_SCOPES) if word in ("", "all") else (word,)
        who = self.title(chat)
        if command == "/optin":
            await self.client.opt_in(chat, scopes)
            text = f"You agreed to {scope_words(scopes)} from {who}. /optout withdraws it."
        else:
            await self.client.opt_out(chat, scopes)
            text = f"You withdrew your consent to {scope_words(scopes)} from {who}."
        self._note(chat, LineKind.NOTICE, text)

    # --- blocks and reports ------------------------------------------------------------------

    async def block(self) -> None:
        chat = self.open_chat
        if chat is None:
            self.feedback = "Open a chat first; /block blocks that chat."
            return
        new = await self.client.block(chat)
        self.blocked.add(chat)
        who = self.title(chat)
        if not new:
            self.feedback = f"{who} is blocked already; /unblock undoes it."
            return
        self._note(
            chat,
            LineKind.NOTICE,
            f"You blocked {who}: its messages no longer reach you and you cannot write to it "
            "(it is not told). /unblock undoes this.",
        )

    async def unblock(self) -> None:
        chat = self.open_chat
        if chat is None:
            self.feedback = "Open a chat first; /unblock unblocks that chat."
            return
        await self.client.unblock(chat)
        self.blocked.discard(chat)
        self._note(chat, LineKind.NOTICE, f"You unblocked {self.title(chat)}: you can write again.")

    async def report(self, argument: str) -> None:
        """``/report <reason> [block]`` for the open chat; its last message to us is named,
        so that the operator can tell which delivery (and template) it is about."""
        chat = self.open_chat
        reason, _, rest = argument.lower().partition(" ")
        reasons = ", ".join(REPORT_REASONS)
        if chat is None:
            self.feedback = f"Open a chat first; /report reports that chat ({reasons})."
            return
        if reason not in REPORT_REASONS:
            said = f"“{reason}” is not a reason. " if reason else ""
            self.feedback = (
                f"{said}Report {self.title(chat)} for: {reasons}; add “block” to block it too, "
                "e.g. /report spam block"
            )
            return
        block = rest.strip() == "block"
        received = [
            m.message_id
            for m in self.client.store.messages(chat)
            if not m.outgoing and m.status is not MessageStatus.FAILED
        ]
        await self.client.report(
            chat, reason, message_id=received[-1] if received else None, block=block
        )
        who = self.title(chat)
        text = f"You reported {who} to your operator ({reason})."
        if block:
            self.blocked.add(chat)
            text += f" {who} is blocked too; /unblock undoes that."
        self._note(chat, LineKind.NOTICE, text)

    # --- sending -----------------------------------------------------------------------------

    async def send(self, text: str) -> None:
        chat = self.open_chat
        if chat is None:
            self.feedback = "Open a chat first: /new +49… (the number of the other person)."
            return
        try:
            await self.client.send_text(chat, text)
        except IdentityNotTrusted:
            self._note(
                chat,
                LineKind.WARNING,
                f"Not sent: “{_shorten(text)}”. The security keys of {self.title(chat)} "
                "changed; compare safety numbers (/safety), then /trust.",
            )
        except RelayError as exc:
            if exc.code == ErrorCode.BLOCKED_BY_YOU:
                self.blocked.add(chat)
            self._note(
                chat,
                LineKind.ERROR,
                f"Not sent: “{_shorten(text)}”: {relay_error_text(exc, self.title(chat))}.",
            )
        except httpx.HTTPError:
            self._note(
                chat, LineKind.ERROR, f"Not sent: “{_shorten(text)}”: the relay cannot be reached"
            )
        except CryptoError as exc:
            self._note(
                chat, LineKind.ERROR, f"Not sent: “{_shorten(text)}”: encryption refused ({exc})"
            )

    async def choose(self, argument: str) -> None:
        """``/choose N``: answer the open chat's latest interactive message (or template
        message with quick replies) with its option N (or an option's id or title)."""
        chat = self.open_chat
        if chat is None:
            self.feedback = "Open a chat first; /choose answers its buttons, list or quick replies."
            return
        found = self._latest_choices(chat)
        if found is None:
            self.feedback = (
                f"{self.title(chat)} asked nothing to choose from: /choose answers buttons, "
                "lists and quick replies."
            )
            return
        message_id, choices = found
        offered = " · ".join(c.label() for c in choices)
        if not argument:
            self.feedback = f"Choose with /choose and a number: {offered}"
            return
        if argument.isdigit() and 1 <= int(argument) <= len(choices):
            choice = choices[int(argument) - 1]
        else:
            try:
                choice = pick(choices, argument)
            except ValueError:
                self.feedback = f"There is no option “{argument}”. Choose with /choose N: {offered}"
                return
        try:
            if choice.button_index is not None:
                await self.client.tap_quick_reply(chat, message_id, choice.button_index)
            else:
                await self.client.answer(chat, message_id, choice.id)
        except IdentityNotTrusted:
            self._note(
                chat,
                LineKind.WARNING,
                f"Not sent: “{choice.title}”. The security keys of {self.title(chat)} changed; "
                "compare safety numbers (/safety), then /trust.",
            )

    def _latest_choices(self, chat: str) -> tuple[str, list[Choice]] | None:
        """The chat's latest received message that offers choices, and its choices."""
        for message in reversed(self.client.store.messages(chat)):
            if message.outgoing or message.payload is None:
                continue
            if message.status is MessageStatus.FAILED:
                continue
            try:
                payload = decode_payload(message.payload)
            except ValueError:
                continue
            if isinstance(payload, Interactive):
                return message.message_id, interactive_choices(payload)
            rendered = self._rendered.get(message.message_id)
            if isinstance(payload, Template) and rendered is not None:
                quick = quick_reply_choices(rendered)
                if quick:
                    return message.message_id, quick
        return None

    async def show_safety_number(self) -> None:
        chat = self.open_chat
        if chat is None:
            self.feedback = "Open a chat first; /safety shows the safety number of that chat."
            return
        number = await self.client.safety_number(chat)
        hint = (
            " If it matches theirs, type /trust to accept their new keys."
            if self.client.trust_of(chat) is Trust.CHANGED
            else ""
        )
        self._note(
            chat,
            LineKind.NOTICE,
            f"Safety number with {self.title(chat)}: {number}. Compare it with theirs: the same "
            f"digits mean nobody is in between.{hint}",
        )

    async def trust(self) -> None:
        chat = self.open_chat
        if chat is None:
            self.feedback = "Open a chat first; /trust accepts that chat's changed keys."
            return
        if self.client.trust_of(chat) is not Trust.CHANGED:
            self.feedback = f"The keys of {self.title(chat)} have not changed; nothing to accept."
            return
        await self.client.trust_identity(chat)
        self._note(
            chat, LineKind.NOTICE, f"You accepted the new security keys of {self.title(chat)}."
        )

    async def _mark_read(self, account_id: str) -> None:
        try:
            await self.client.mark_read(account_id)
        except (RelayError, httpx.HTTPError) as exc:
            log.warning("marking messages read failed", error=str(exc))

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
                self._rendered[event.message_id] = event.template
            elif isinstance(event.payload, Template):  # sent by another of our devices
                await self._render(event.message_id, event.payload, event.sender)
            await self._learn_phone(event.chat)
            if self.client.is_business(event.chat):
                await self._first_check(event.chat)
            if event.chat == self.open_chat and not event.outgoing:
                await self._mark_read(event.chat)  # the user is looking at it
        elif isinstance(event, IdentityChanged):
            await self._learn_phone(event.account_id)
            self._note(
                event.account_id,
                LineKind.WARNING,
                f"⚠ The security keys of {self.title(event.account_id)} changed.",
            )
        elif isinstance(event, DecryptionFailed):
            if event.reason.partition(": ")[0] in _TEMPLATE_REJECTIONS:
                # The store keeps only the reason; the kind says whether it was reported.
                self._rejected[event.message_id] = event.reason
            await self._learn_phone(event.sender)
        elif isinstance(event, ConsentChanged):
            # A STOP or START typed to a business: confirmed (or not) in its chat.
            kind = LineKind.NOTICE if event.failed is None else LineKind.ERROR
            self._note(event.business, kind, event.confirmation)
        elif isinstance(event, DeviceAdded):
            if event.account_id == self.client.account_id:
                self.feedback = "A new device was added to your account."
            else:
                await self._learn_phone(event.account_id)
                self._note(
                    event.account_id,
                    LineKind.NOTICE,
                    f"{self.title(event.account_id)} added a device.",
                )
        elif isinstance(event, Connected):
            self.connected = True
        elif isinstance(event, Disconnected):
            self.connected = False


# --- widgets ---------------------------------------------------------------------------------


def _clock(ms: int) -> str:
    at = datetime.fromtimestamp(ms / 1000)
    return at.strftime("%H:%M" if at.date() == datetime.now().date() else "%d.%m. %H:%M")


class ChatItem(ListItem):
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


_TICK_STYLES: dict[MessageStatus | None, str] = {
    MessageStatus.READ: "bold cyan",
    MessageStatus.FAILED: "bold red",
}


class LineView(Static):
    """One line of a chat: a message (ours on the right, with ticks) or a notice."""

    def __init__(self, line: ChatLine) -> None:
        self.line = line
        classes = [str(line.kind)]
        if line.kind is LineKind.MESSAGE:
            classes.append("outgoing" if line.outgoing else "incoming")
        if line.status is MessageStatus.READ:
            classes.append("read")
        super().__init__(self._content(line), classes=" ".join(classes))

    @staticmethod
    def _content(line: ChatLine) -> Content:
        when = (_clock(line.at_ms), "dim")
        if line.kind is not LineKind.MESSAGE:
            return Content.assemble(when, "  ", line.text)
        marker: list[str | tuple[str, str]] = (
            [] if line.marker is None else [(line.marker, "dim italic"), "\n"]
        )
        if not line.outgoing:
            return Content.assemble(when, "  ", *marker, line.text)
        tick_style = _TICK_STYLES.get(line.status, "dim")
        return Content.assemble(*marker, line.text, "  ", when, " ", (line.ticks, tick_style))


class RegisterScreen(Screen[bool]):
    """Phone number, then the code from the SMS; dismissed with True once registered."""

    def __init__(self, client: Client, device_name: str | None = None) -> None:
        super().__init__()
        self.client = client
        self.device_name = device_name or f"tresen chat on {platform.node()}"
        self.phone = ""

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
        except RelayError as exc:
            self._error(f"{exc.message} (code {exc.code})")
            return
        except httpx.HTTPError:
            self._error("The relay cannot be reached; try again in a moment.")
            return
        self.phone = phone
        self.query_one("#register-hint", Static).update(
            Content(f"A code was sent to {phone}; it is valid for {lifetime // 60} minutes.")
        )
        code = self.query_one("#code", Input)
        code.disabled = False
        code.focus()

    @work(exclusive=True, group="register")
    async def _register(self, code: str) -> None:
        self._error("")
        try:
            await self.client.register(self.phone, code, self.device_name)
        except RelayError as exc:
            self._error(f"{exc.message} (code {exc.code})")
            return
        except httpx.HTTPError:
            self._error("The relay cannot be reached; try again in a moment.")
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
    #messages > .notice { color: $text-muted; text-style: italic; }
    #messages > .warning { color: $error; text-style: bold; }
    #messages > .error { color: $error; }
    #feedback { height: auto; padding: 0 1; color: $text-muted; }
    #register { padding: 1 2; }
    #register > Static { margin: 1 0 0 0; }
    #register-error { color: $error; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit"),
        Binding("ctrl+l", "focus_chats", "Chats"),
        Binding("escape", "focus_input", "Input", show=False),
    ]

    def __init__(self, client: Client, *, device_name: str | None = None) -> None:
        super().__init__()
        self.model = ChatModel(client)
        self.device_name = device_name
        self._typed: asyncio.Queue[str] = asyncio.Queue()
        self._rows: list[ChatRow] = []
        self._shown: tuple[str | None, list[ChatLine]] = (None, [])

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
            placeholder="Message, or /new +49…  /find …  /profile  /consents  /block  /help",
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
                left_ms = event.until_ms - self.model.client.clock.now_ms()
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
        model = self.model
        state = "connected" if model.connected else "connecting…"
        self.sub_title = f"{model.client.phone or ''} · {state}"
        self.query_one("#feedback", Static).update(Content(model.feedback or COMMANDS_HELP))
        await self._show_chats(model.chat_rows())
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
        await messages.remove_children()
        await messages.mount_all([LineView(line) for line in lines])
        messages.scroll_end(animate=False)

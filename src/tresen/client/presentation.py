"""What the customer reads, written once for every front end (the terminal app and the
``tresen chat`` commands): message lines and their status marks, business profiles with their
hours, directory hits, consent states and confirmations, and errors as sentences.

Pure functions over the client's data: no widget, no I/O and no clock of their own (the time
"now" is an argument). Where a sentence names a command, the front end passes its own
spelling of it (:class:`Hints`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

import httpx

from tresen.client.api import RelayError
from tresen.client.business import Business, BusinessSummary
from tresen.client.choices import (
    interactive_choices,
    interactive_text,
    quick_reply_choices,
    template_text,
)
from tresen.client.consent import ALL_SCOPES, BusinessConsents, ConsentRecord, ConsentScope
from tresen.client.store import KnownBusiness, MessageStatus, StoredMessage
from tresen.core.errors import ErrorCode
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
    attached_file,
    decode_payload,
)
from tresen.wire.templates import RenderedTemplate

__all__ = [
    "APP_HINTS",
    "BUSINESS_LABEL",
    "PENDING_TEXT",
    "VERIFIED_LABEL",
    "WAITING_TEXT",
    "ChatLine",
    "Hints",
    "LineKind",
    "StatusMark",
    "business_check_failed_text",
    "business_label",
    "category_name",
    "chat_lines",
    "choice_hint",
    "cli_hints",
    "code_retry_text",
    "code_sent_text",
    "consent_states_text",
    "consent_summary",
    "consent_withdrawn_text",
    "describe",
    "device_added_text",
    "directory_line",
    "error_text",
    "failure_text",
    "identity_text",
    "is_template_rejection",
    "key_log_text",
    "keys_unchanged_text",
    "media_text",
    "message_line",
    "one_line",
    "operator_key_text",
    "opted_in_text",
    "opted_out_text",
    "profile_lines",
    "registration_error_text",
    "relay_error_text",
    "scope_words",
    "sentence",
    "shorten",
    "size_text",
    "status_mark",
    "template_marker",
    "time_text",
    "transcript_line",
    "unread_text",
]

BUSINESS_LABEL = "Business"
VERIFIED_LABEL = "✓ verified"
WAITING_TEXT = "Waiting for this message. This may take a while."
PENDING_TEXT = (
    "⏱ The relay cannot be reached: the message waits and goes out, in order, when it is back."
)


@dataclass(frozen=True, slots=True)
class Hints:
    """How a front end names its commands inside the sentences below."""

    safety: str
    trust: str
    unblock: str
    optout: str
    optin: str


APP_HINTS = Hints(
    safety="/safety",
    trust="type /trust",
    unblock="type /unblock",
    optout="/optout withdraws it",
    optin="/optin in its chat undoes this",
)


def cli_hints(peer: str = "NUMBER") -> Hints:
    """The commands of ``tresen chat`` for the chat with ``peer`` (a number or account id)."""
    return Hints(
        safety=f"`tresen chat safety --with {peer}`",
        trust=f"accept the new keys with `tresen chat trust --with {peer}`",
        unblock=f"run `tresen chat unblock {peer}`",
        optout=f"`tresen chat optout {peer}` withdraws it",
        optin=f"`tresen chat optin {peer}` undoes this",
    )


def sentence(text: str) -> str:
    """``text`` with a capital first letter (the clauses below start in lower case, to be
    used inside a longer line as well)."""
    return text[:1].upper() + text[1:]


def shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    """A multi-line text (a template, buttons) on one line, its lines separated by `` / ``."""
    return " / ".join(part.strip() for part in text.splitlines() if part.strip())


def time_text(at_ms: int, now_ms: int, *, seconds: bool = False) -> str:
    """``14:05`` today, ``31.12. 14:05`` on another day (local time of this computer)."""
    at = datetime.fromtimestamp(at_ms / 1000)
    clock = "%H:%M:%S" if seconds else "%H:%M"
    same_day = at.date() == datetime.fromtimestamp(now_ms / 1000).date()
    return at.strftime(clock if same_day else f"%d.%m. {clock}")


def unread_text(unread: int) -> str:
    return "" if not unread else f"{unread} unread" if unread < 1000 else "999+ unread"


# --- status marks ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusMark:
    """The mark beside an outgoing message: ``✓`` sent, ``✓✓`` delivered, ``✓✓`` read
    (``highlight``), ``✗`` not delivered, ``⏱`` not yet accepted by the relay, ``⌛`` being
    sent again; ``words`` say what the marks that need it mean."""

    symbol: str
    words: str = ""
    highlight: bool = False
    problem: bool = False

    def __str__(self) -> str:
        return f"{self.symbol} {self.words}".strip()


def status_mark(status: MessageStatus | None, error: str | None = None) -> StatusMark:
    """The mark of an outgoing message in ``status`` (``error``: why it failed)."""
    if status is MessageStatus.PENDING:
        return StatusMark("⏱", "waiting for the network")
    if status is MessageStatus.SENT:
        return StatusMark("✓")
    if status is MessageStatus.WAITING:
        # ✓✓ only once a device of theirs decrypted it: this one is being sent again.
        return StatusMark("⌛", "resending — the recipient's device could not read it yet")
    if status is MessageStatus.DELIVERED:
        return StatusMark("✓✓")
    if status is MessageStatus.READ:
        return StatusMark("✓✓", highlight=True)
    if status is MessageStatus.FAILED:
        return StatusMark("✗", "not delivered" + (f": {error}" if error else ""), problem=True)
    return StatusMark("")


# --- message lines -----------------------------------------------------------------------------


class LineKind(StrEnum):
    MESSAGE = "message"
    WAITING = "waiting"  # a received message this device asked its sender for again
    FAILED = "failed"  # a message that could not be decrypted, or was refused
    NOTICE = "notice"  # what a command showed, e.g. the safety number
    WARNING = "warning"  # changed identity keys, a message not sent
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ChatLine:
    kind: LineKind
    text: str
    at_ms: int
    outgoing: bool = False
    message_id: str | None = None
    status: MessageStatus | None = None
    marker: str | None = None  # e.g. "template · utility": shown small above the text
    error: str | None = None  # why an outgoing message failed
    choices: int = 0  # options offered to answer with (buttons, list rows, quick replies)
    attachment: int = 0  # a file: its number among the chat's files, from 1 (``/save N``)

    @property
    def mark(self) -> StatusMark:
        """The status mark; only outgoing messages have one."""
        if not self.outgoing or self.kind is not LineKind.MESSAGE:
            return StatusMark("")
        return status_mark(self.status, self.error)

    @property
    def ticks(self) -> str:
        return str(self.mark)

    def summary(self) -> str:
        """The line on one line, its marker in brackets: how ``tresen chat`` prints it."""
        return (f"[{self.marker}] " if self.marker else "") + one_line(self.text)


def transcript_line(line: ChatLine, who: str, now_ms: int) -> str:
    """A chat line as ``tresen chat`` prints it, one a line: ``14:05:09 Alice → Hello``,
    ``14:05:12 you → Alice Hi  ✓✓`` (``who``: the chat's name)."""
    when = time_text(line.at_ms, now_ms, seconds=True)
    if line.kind not in (LineKind.MESSAGE, LineKind.WAITING):
        return f"{when} {one_line(line.text)}"
    if not line.outgoing:
        return f"{when} {who} → {line.summary()}"
    mark = str(line.mark)
    return f"{when} you → {who} {line.summary()}" + (f"  {mark}" if mark else "")


def choice_hint(count: int, command: str = "/choose") -> str:
    """``/choose 1…3``: how to answer a message that offers ``count`` options."""
    return f"{command} 1" + (f"…{count}" if count > 1 else "")


def describe(payload: object, quoted: str | None = None) -> str:
    """The text of a message payload; ``quoted`` is the text a reaction is about."""
    if isinstance(payload, Text):
        return payload.text
    if isinstance(payload, Reaction):
        target = f" to “{shorten(quoted)}”" if quoted else ""
        return f"reacted {payload.emoji}{target}" if payload.emoji else "removed a reaction"
    if isinstance(payload, Media):
        return media_text(payload)
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


def size_text(n: int) -> str:
    """``812 bytes``, ``14 KB``, ``1.2 MB``: a file's size as people read it (1000s)."""
    if n < 1000:
        return f"{n} byte" + ("" if n == 1 else "s")
    for unit, scale in (("KB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        value = n / scale
        if value < 999.5 or unit == "GB":
            return f"{value:.1f} {unit}" if value < 9.95 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def media_text(media: Media) -> str:
    """``📎 document · invoice.pdf · 48 KB — Your invoice``: kind, name, size and caption."""
    kind = "voice note" if media.voice else str(media.kind)
    parts = [f"📎 {kind}"]
    if media.filename:
        parts.append(one_line(media.filename))
    parts.append(size_text(media.plain_size))
    if media.width and media.height:
        parts.append(f"{media.width}x{media.height}")
    if media.duration_ms is not None:
        seconds = round(media.duration_ms / 1000)
        parts.append(f"{seconds // 60}:{seconds % 60:02d}")
    text = " · ".join(parts)
    return f"{text} — {media.caption}" if media.caption else text


def template_marker(rendered: RenderedTemplate) -> str:
    return f"template · {str(rendered.category).lower()}"


def chat_lines(
    messages: list[StoredMessage],
    who: str,
    rendered: Mapping[str, RenderedTemplate],
    rejected: Mapping[str, str] | None = None,
) -> list[ChatLine]:
    """A chat's stored messages (oldest first) as lines: ``who`` is the chat's name,
    ``rendered`` holds template messages as their operator-signed templates render them and
    ``rejected`` why received messages were refused, by message id."""
    texts: dict[str, str] = {}
    lines = []
    files = 0
    for message in messages:
        line = message_line(
            message,
            who,
            rendered=rendered.get(message.message_id),
            rejection=(rejected or {}).get(message.message_id),
            texts=texts,
        )
        if line.attachment:
            files += 1
            line = dataclasses.replace(line, attachment=files, marker=f"file {files}")
        lines.append(line)
        if line.message_id is not None and line.kind is LineKind.MESSAGE:
            texts[line.message_id] = line.text
    return lines


def message_line(
    message: StoredMessage,
    who: str,
    *,
    rendered: RenderedTemplate | None = None,
    rejection: str | None = None,
    texts: Mapping[str, str] | None = None,
) -> ChatLine:
    """A stored message as its chat shows it. ``who``: the chat's name; ``rendered``: a
    template message as its operator-signed template renders it; ``rejection``: why a
    received message was refused; ``texts``: earlier messages' texts by id, for the one a
    reaction is about."""
    at, message_id = message.server_ms, message.message_id
    if not message.outgoing and message.status is MessageStatus.WAITING:
        return ChatLine(LineKind.WAITING, WAITING_TEXT, at, message_id=message_id)
    # A sent message that failed is still ours to show, with its ✗.
    unreadable = message.status is MessageStatus.FAILED and not message.outgoing
    if unreadable or message.payload is None:
        reason = rejection or message.error or "no content"
        return ChatLine(LineKind.FAILED, failure_text(who, reason), at, message_id=message_id)
    try:
        payload = decode_payload(message.payload)
    except ValueError as exc:
        return ChatLine(LineKind.FAILED, f"⚠ An unreadable message ({exc}).", at)
    quoted = (texts or {}).get(payload.message_id) if isinstance(payload, Reaction) else None
    text, marker, choices = describe(payload, quoted), None, 0
    if isinstance(payload, Template) and rendered is not None:
        # Only the signed template's rendering is ever shown; until it is at hand (the
        # template could not be fetched), the template's name stands in for it.
        text, marker = template_text(rendered), template_marker(rendered)
        choices = len(quick_reply_choices(rendered))
    elif isinstance(payload, Interactive):
        marker = "buttons" if payload.type == InteractiveKind.BUTTON else "list"
        choices = len(interactive_choices(payload))
    file = attached_file(payload)
    if file is not None and file is not payload:
        text = f"{media_text(file)}\n{text}"  # a template's or buttons' file header
    return ChatLine(
        LineKind.MESSAGE,
        text,
        at,
        outgoing=message.outgoing,
        message_id=message_id,
        status=message.status,
        marker=marker,
        error=message.error if message.outgoing else None,
        choices=0 if message.outgoing else choices,
        attachment=0 if file is None else 1,
    )


# Reasons (``DecryptionFailed.reason``) of a template message the client refused.
_TEMPLATE_REJECTIONS = {
    "template_mismatch": "does not match the template your operator approved ({}); it was "
    "reported to your operator",
    "template_unavailable": "could not be checked ({}), so it is not shown",
    "template_rejected": "was refused ({})",
}


def is_template_rejection(reason: str) -> bool:
    return reason.partition(": ")[0] in _TEMPLATE_REJECTIONS


def failure_text(who: str, reason: str) -> str:
    """The line for a received message that is not shown: a refused template message, a
    disguised system message, or one that could not be decrypted."""
    kind, _, detail = reason.partition(": ")
    if kind in _TEMPLATE_REJECTIONS:
        return f"⚠ A template message from {who} " + _TEMPLATE_REJECTIONS[kind].format(detail)
    if kind == "class_mismatch":
        return (
            f"⚠ A message from {who} is not shown: it came as a system message, which only "
            f"“typing…” may be ({detail}); it was reported to your operator."
        )
    return f"⚠ A message from {who} could not be decrypted ({reason})."


# --- businesses --------------------------------------------------------------------------------

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


def business_label(known: KnownBusiness | None) -> str | None:
    """``Business``, ``Business ✓ verified`` or nothing (a personal chat). Only this
    device's check of the operator's certificate earns the tick, never the relay's word."""
    if known is None:
        return None
    return f"{BUSINESS_LABEL} {VERIFIED_LABEL}" if known.verified else BUSINESS_LABEL


def profile_lines(business: Business, now_ms: int, *, account: bool = False) -> list[str]:
    """A business's profile: the name with the tick (or why there is none), what it says
    about itself, how to reach it (``account``: with its account id), when it is open and
    the days it is closed."""
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
        ("Account", profile.account_id if account else ""),
    )
    lines += [f"{name}: {value}" for name, value in details if value]
    lines.append(profile.opening_status(now_ms))
    if profile.has_hours:
        lines.append(f"Opening hours ({profile.timezone}):")
        lines += profile.hours_lines()
    closed = _coming(profile.closed_dates, profile.timezone, now_ms)
    if closed:
        lines.append("Closed on: " + ", ".join(day.strftime("%a %d %b %Y") for day in closed))
    return lines


def _coming(days: tuple[date, ...], timezone: str, now_ms: int) -> list[date]:
    """The days from today on (the business's today), in order."""
    today = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(timezone)).date()
    return sorted(day for day in days if day >= today)


def business_check_failed_text(who: str, exc: Exception) -> str:
    """Why ``who`` could not be checked as a business (its label stays as last checked)."""
    if isinstance(exc, RelayError) and exc.code == ErrorCode.UNDELIVERABLE:
        return f"{who} is not (or no longer) a listed business: {exc.message}. It shows no tick."
    if isinstance(exc, RelayError):
        return f"Could not check {who}: {exc.message} (code {exc.code})."
    if isinstance(exc, httpx.HTTPError):
        return f"Could not check {who}: cannot reach the relay. The label is from the last check."
    return f"Could not check {who}: {exc}."


def directory_line(hit: BusinessSummary, number: int | None = None) -> str:
    """One business found in the directory: ``1. Tresen Air ✓ · Travel and transportation ·
    Flights across Europe  (account id)``; ✓ where this device checked the certificate."""
    name = f"{hit.display_name} ✓" if hit.verified else hit.display_name
    parts = [name if number is None else f"{number}. {name}"]
    parts += [part for part in (category_name(hit.category), hit.about) if part]
    return " · ".join(parts) + f"  ({hit.account_id})"


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


# --- consent -----------------------------------------------------------------------------------

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


def consent_states_text(records: list[ConsentRecord], name: str) -> str:
    """The consent of one business after a change: ``Tresen Air: utility on, marketing off``."""
    states = ", ".join(f"{r.scope} {'on' if r.opted_in else 'off'}" for r in records)
    return f"{name}: {states}"


def opted_in_text(scopes: tuple[str, ...], who: str, hints: Hints) -> str:
    return f"You agreed to {scope_words(scopes)} from {who}. {sentence(hints.optout)}."


def opted_out_text(scopes: tuple[str, ...], who: str) -> str:
    return f"You withdrew your consent to {scope_words(scopes)} from {who}."


def consent_withdrawn_text(who: str, hints: Hints) -> str:
    return (
        f"You withdrew all consent from {who}: no more order updates, codes or offers from "
        f"it, unless you write to it (it may answer for 24 hours). {sentence(hints.optin)}."
    )


# --- errors ------------------------------------------------------------------------------------


def keys_unchanged_text(who: str) -> str:
    return f"The security keys of {who} have not changed; nothing to accept."


def device_added_text(who: str) -> str:
    return f"{who} added a device."


def identity_text(who: str, hints: Hints) -> str:
    """Why sending to ``who`` is paused after its identity keys changed, and what to do."""
    return (
        f"The security keys of {who} changed. They may have reinstalled Tresen, or someone may "
        f"be intercepting this chat. Sending is paused: compare the safety number "
        f"({hints.safety}) with them in person or on a call, and if it matches, {hints.trust}."
    )


def key_log_text(who: str, hints: Hints) -> str:
    """Why sending to ``who`` is paused after the relay's key log failed to vouch for the
    keys it gave, and what to do."""
    return (
        f"The relay's key log does not confirm the security keys it gave for {who}: the relay "
        f"may be showing you keys that others do not see. Sending is paused: compare the "
        f"safety number ({hints.safety}) with them in person or on a call, and if it matches, "
        f"{hints.trust}."
    )


def relay_error_text(exc: RelayError, who: str, hints: Hints) -> str:
    """A relay's refusal as a clause for the person who sent (``who``: the other side);
    codes without a sentence of their own keep the relay's message and code."""
    seconds = -(-int(exc.details.get("retry_after_ms") or 1000) // 1000)
    sentences: dict[int, str] = {
        ErrorCode.BLOCKED_BY_YOU: f"you blocked {who}; {hints.unblock} to write again",
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
        ErrorCode.ATTACHMENT_TOO_LARGE: "the file is larger than the relay accepts",
        ErrorCode.ATTACHMENT_QUOTA_EXCEEDED: "your space for files on the relay is used up "
        "for now; try again later",
        ErrorCode.ATTACHMENT_NOT_FOUND: "the relay no longer has this file",
    }
    return sentences.get(exc.code) or f"{exc.message} (code {exc.code})"


def error_text(exc: Exception, who: str, hints: Hints) -> str | None:
    """The clause for a failure of the relay, the network or the encryption (``None``: not
    one of these)."""
    if isinstance(exc, RelayError):
        return f"the relay refused: {relay_error_text(exc, who, hints)}"
    if isinstance(exc, httpx.HTTPError):
        detail = str(exc) or type(exc).__name__
        return f"cannot reach the relay ({detail}); try again in a moment"
    if isinstance(exc, CryptoError):
        return f"end-to-end encryption refused: {exc}"
    return None


def code_sent_text(phone: str, lifetime_s: int) -> str:
    return f"A code was sent to {phone}; it is valid for {lifetime_s // 60} minutes."


def code_retry_text(left: int) -> str:
    """After a wrong code, with ``left`` more tries for the same code."""
    tries = "1 try" if left == 1 else f"{left} tries"
    return f"That code is not correct; type it again ({tries} left)."


def registration_error_text(exc: Exception, *, new_code: str = "") -> str:
    """What went wrong while registering, as a sentence. ``new_code``: how to get a new
    code, said when the code itself is no good any more."""
    again = f" {new_code}" if new_code else ""
    if isinstance(exc, RelayError):
        if exc.code == ErrorCode.CODE_INCORRECT:
            return "The code is not correct, and no tries are left." + again
        if exc.code == ErrorCode.CODE_EXPIRED:
            return "The code expired." + again
        if exc.code == ErrorCode.CODE_ATTEMPTS_EXCEEDED:
            return "Too many wrong codes: wait a while before you try again."
        return f"{exc.message} (code {exc.code})."
    return sentence(error_text(exc, "the relay", APP_HINTS) or str(exc)) + "."

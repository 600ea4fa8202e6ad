"""The app's input line: a text for the open chat, or a ``/command`` that acts on the model.

:func:`parse` tells the two apart; :class:`Commands` runs them and answers in the model's
``feedback`` (or with a notice in the chat a command is about).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from tresen.client.api import RelayError
from tresen.client.choices import Choice, interactive_choices, pick, quick_reply_choices
from tresen.client.consent import ALL_SCOPES
from tresen.client.contacts import InvalidName
from tresen.client.presentation import (
    APP_HINTS,
    PENDING_TEXT,
    LineKind,
    consent_summary,
    consent_withdrawn_text,
    directory_line,
    error_text,
    keys_unchanged_text,
    operator_key_text,
    opted_in_text,
    opted_out_text,
    profile_lines,
    relay_error_text,
    sentence,
    shorten,
)
from tresen.client.sdk import IdentityNotTrusted
from tresen.client.store import MessageStatus, Trust
from tresen.core.errors import ErrorCode
from tresen.crypto import CryptoError
from tresen.wire.e2e import Interactive, Template, decode_payload

if TYPE_CHECKING:
    from tresen.client.app.model import ChatModel

__all__ = ["COMMANDS_HELP", "FIND_LIMIT", "HELP", "REPORT_REASONS", "Commands", "Typed", "parse"]

COMMANDS_HELP = (
    "/new +49… opens a chat · /find bakery searches businesses · /name +49… Alice names a "
    "number · /consents: who may write to you · /help lists every command · /quit"
)
HELP = "\n".join(
    (
        "/new +49… (or /new 1 after /find) opens a chat · /find bakery searches businesses",
        "/name +49… Alice shows Alice instead of the number (/name Alice: the open chat; "
        "/name +49… alone removes the name)",
        "/profile a business's profile · /safety the safety number · /trust accepts changed "
        "keys · /operator the operator key",
        "/consents who may write to you · /revoke [1] withdraws all of a business's consent · "
        "/optin, /optout [marketing|utility] in its chat",
        "/block, /unblock the open chat · /report spam|offensive|scam|unwanted|other [block]",
        "/choose 2 answers the chat's latest buttons, list or quick replies with option 2",
        "/attach PATH [caption] sends a file · /save 2 [PATH] saves the chat's file 2 · "
        "/open 2 opens it (without a number: the newest file)",
        "/delete removes the chat's newest message that waits for the network (⏱); "
        "/delete 2 the second of them",
        "STOP or START typed to a business ends or resumes its offers · //text sends “/text” "
        "· /quit",
    )
)
REPORT_REASONS = ("spam", "offensive", "scam", "unwanted", "other")
FIND_LIMIT = 10  # /find answers in the feedback line under the chat; more would push it away
QUIT = ("/quit", "/exit", "/q")


@dataclass(frozen=True, slots=True)
class Typed:
    """One line the user typed: a ``command`` (lower case, with its ``argument``), or a
    text to send (``command`` is None; ``//text`` sends ``/text``)."""

    command: str | None
    argument: str


def parse(line: str) -> Typed | None:
    """What ``line`` asks for; None for an empty line."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("//"):
        return Typed(None, text[1:])
    if text.startswith("/"):
        command, _, argument = text.partition(" ")
        return Typed(command.lower(), argument.strip())
    return Typed(None, text)


def _is_file_number(argument: str) -> bool:
    # A file's number is short; an account id is 32 hex digits, a phone number starts with +.
    return argument.isdigit() and len(argument) <= 6


class Commands:
    """The ``/…`` commands of the app, run on its model."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.client = model.client
        handlers: dict[tuple[str, ...], Callable[[str], Awaitable[None]]] = {
            ("/new",): self.open,
            ("/open",): self.open_file_or_chat,
            ("/attach",): model.files.attach,
            ("/save",): model.files.save,
            ("/profile", "/info"): self.profile,
            ("/find",): self.find,
            ("/name",): self.name,
            ("/operator",): self.operator,
            ("/safety",): self.safety,
            ("/trust",): self.trust,
            ("/consents",): self.consents,
            ("/revoke",): self.revoke,
            ("/optin",): self.optin,
            ("/optout",): self.optout,
            ("/block",): self.block,
            ("/unblock",): self.unblock,
            ("/report",): self.report,
            ("/choose",): self.choose,
            ("/delete",): self.delete,
            ("/help",): self.help,
        }
        self._handlers = {name: handler for names, handler in handlers.items() for name in names}

    async def submit(self, line: str) -> bool:
        """Run a command or send a text to the open chat; False when the app should quit."""
        typed = parse(line)
        if typed is None:
            return True
        self.model.feedback = ""
        if typed.command is None:
            await self.send(typed.argument)
            return True
        if typed.command in QUIT:
            return False
        handler = self._handlers.get(typed.command)
        if handler is None:
            self.model.feedback = f"Unknown command {typed.command}. {COMMANDS_HELP}"
            return True
        try:
            await handler(typed.argument)
        except (RelayError, httpx.HTTPError, CryptoError) as exc:
            explained = error_text(exc, self._who(self.model.open_chat), APP_HINTS)
            self.model.feedback = sentence(explained or str(exc)) + "."
        return True

    def _who(self, account_id: str | None) -> str:
        return "them" if account_id is None else self.model.title(account_id)

    def _open_chat(self, what: str) -> str | None:
        """The open chat, or None after saying in ``feedback`` that ``what`` needs one."""
        if self.model.open_chat is None:
            self.model.feedback = f"Open a chat first; {what}."
        return self.model.open_chat

    async def help(self, _argument: str) -> None:
        self.model.feedback = HELP

    async def operator(self, _argument: str) -> None:
        self.model.feedback = operator_key_text(self.client.operator_fingerprint)

    # --- chats and businesses ----------------------------------------------------------------

    async def open(self, argument: str) -> None:
        if not argument:
            self.model.feedback = "Whom? Type /new and the phone number, e.g. /new +4915112345"
            return
        await self.model.open(argument)

    async def open_file_or_chat(self, argument: str) -> None:
        """``/open N`` opens file N of the open chat; ``/open +49…`` (like ``/new``) a chat."""
        if self.model.open_chat is not None and (argument == "" or _is_file_number(argument)):
            await self.model.files.open(argument)
            return
        await self.open(argument)

    async def profile(self, _argument: str) -> None:
        chat = self._open_chat("/profile shows the profile of that business")
        if chat is None:
            return
        if not self.client.is_business(chat):
            self.model.note(
                chat,
                LineKind.NOTICE,
                f"{self.model.title(chat)} is a personal chat, not a business: there is no "
                "business profile. /safety shows its safety number.",
            )
            return
        business = await self.model.check_business(chat)
        if business is None:
            return
        for text in profile_lines(business, self.model.clock.now_ms()):
            self.model.note(chat, LineKind.NOTICE, text)

    async def find(self, query: str) -> None:
        """Search the business directory; the hits are numbered for ``/new 1``, ``/new 2``…"""
        found = self.model.found = await self.client.find_businesses(query, limit=FIND_LIMIT)
        if not found:
            self.model.feedback = (
                f"No business matches “{query}”." if query else "The directory is empty."
            )
            return
        lines = [directory_line(hit, number) for number, hit in enumerate(found, start=1)]
        chosen = "/new 1" if len(found) == 1 else f"/new 1 … /new {len(found)}"
        lines.append(f"Open a chat with {chosen}. ✓: verified by your operator, checked here.")
        self.model.feedback = "\n".join(lines)

    async def name(self, argument: str) -> None:
        """``/name +49… Alice`` (or ``/name Alice`` in the open chat) shows Alice instead of
        the number; ``/name +49…`` alone removes the name."""
        number, _, rest = argument.partition(" ")
        if number.startswith("+"):
            account_id, name = await self.client.resolve(number), rest.strip()
        elif argument and self.model.open_chat is not None:
            account_id, name = self.model.open_chat, argument
        else:
            self.model.feedback = (
                "Name whom? /name +4915112345 Alice, or /name Alice in the open chat."
            )
            return
        await self.model.learn_phone(account_id)
        phone = self.client.store.peer_phone(account_id)
        if phone is None or account_id == self.client.account_id:
            self.model.feedback = "Only other people's numbers can be named."
            return
        if not name:
            removed = self.model.contacts.forget(phone)
            self.model.feedback = (
                f"{phone} is shown as its number again." if removed else f"{phone} has no name."
            )
            return
        try:
            contact = self.model.contacts.set_name(phone, name)
        except InvalidName as exc:
            self.model.feedback = f"Not saved: {exc}."
            return
        self.model.feedback = f"{phone} is shown as {contact.name} (on this device only)."

    # --- safety numbers ----------------------------------------------------------------------

    async def safety(self, _argument: str) -> None:
        chat = self._open_chat("/safety shows the safety number of that chat")
        if chat is None:
            return
        number = await self.client.safety_number(chat)
        hint = (
            " If it matches theirs, type /trust to accept their new keys."
            if self.client.trust_of(chat) is not Trust.TRUSTED
            else ""
        )
        self.model.note(
            chat,
            LineKind.NOTICE,
            f"Safety number with {self.model.title(chat)}: {number}. Compare it with theirs: "
            f"the same digits mean nobody is in between.{hint}",
        )

    async def trust(self, _argument: str) -> None:
        chat = self._open_chat("/trust accepts that chat's changed keys")
        if chat is None:
            return
        who = self.model.title(chat)
        if self.client.trust_of(chat) is Trust.TRUSTED:
            self.model.feedback = keys_unchanged_text(who)
            return
        await self.client.trust_identity(chat)
        self.model.note(chat, LineKind.NOTICE, f"You accepted the new security keys of {who}.")

    # --- consent -----------------------------------------------------------------------------

    async def consents(self, _argument: str) -> None:
        """The consent dashboard: every business with a consent on record, numbered for
        ``/revoke 1``, ``/revoke 2``…"""
        self.model.consent_list = await self.client.consents()
        if not self.model.consent_list:
            self.model.feedback = (
                "No business has your consent on record: businesses can only answer within 24 "
                "hours of your messages."
            )
            return
        lines = ["Businesses that may send you templates (on: may send, off: may not):"]
        for number, line in enumerate(self.model.consent_list, start=1):
            name = line.display_name or self.model.title(line.account_id)
            lines.append(f"{number}. {name} · {consent_summary(line, name)}")
        lines.append(
            "/revoke 1 withdraws all consent from a business · in its chat: /optin or /optout "
            "marketing|utility"
        )
        self.model.feedback = "\n".join(lines)

    async def _consent_business(self, argument: str, command: str) -> str | None:
        """The business a consent command is about: the open business chat, or the one
        ``argument`` names (its number or name on the last /consents, or its phone number)."""
        listed = self.model.consent_list
        if not argument:
            chat = self.model.open_chat
            if chat is not None and self.client.is_business(chat):
                return chat
            self.model.feedback = (
                f"Open a business chat first, or name a business from /consents: {command} 1"
            )
            return None
        if argument.isdigit():
            if 1 <= int(argument) <= len(listed):
                return listed[int(argument) - 1].account_id
            self.model.feedback = f"There is no number {argument} on your /consents list."
            return None
        if argument.startswith("+"):
            return await self.client.resolve(argument)
        if not listed:
            listed = self.model.consent_list = await self.client.consents()
        wanted = argument.casefold()
        named = [line for line in listed if (line.display_name or "").casefold() == wanted] or [
            line for line in listed if wanted in (line.display_name or "").casefold()
        ]
        if len(named) == 1:
            return named[0].account_id
        self.model.feedback = (
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
        who = next(
            (r.business_name for r in records if r.business_name), self.model.title(business)
        )
        text = consent_withdrawn_text(who, APP_HINTS)
        self.model.note(business, LineKind.NOTICE, text)
        if business != self.model.open_chat:
            self.model.feedback = text

    async def optin(self, argument: str) -> None:
        await self._change_consent("/optin", argument)

    async def optout(self, argument: str) -> None:
        await self._change_consent("/optout", argument)

    async def _change_consent(self, command: str, argument: str) -> None:
        """``/optin`` or ``/optout`` for the open business chat, for one scope or both."""
        word = argument.lower()
        if word not in ("", "all", *ALL_SCOPES):
            self.model.feedback = (
                f"Which messages? {command} marketing (offers) or {command} utility (order "
                "updates, codes); without a word: both."
            )
            return
        chat = self.model.open_chat
        if chat is None or not self.client.is_business(chat):
            self.model.feedback = f"Open a business chat first; {command} is about that business."
            return
        scopes = tuple(str(s) for s in ALL_SCOPES) if word in ("", "all") else (word,)
        who = self.model.title(chat)
        if command == "/optin":
            await self.client.opt_in(chat, scopes)
            text = opted_in_text(scopes, who, APP_HINTS)
        else:
            await self.client.opt_out(chat, scopes)
            text = opted_out_text(scopes, who)
        self.model.note(chat, LineKind.NOTICE, text)

    # --- blocks and reports ------------------------------------------------------------------

    async def block(self, _argument: str) -> None:
        chat = self._open_chat("/block blocks that chat")
        if chat is None:
            return
        new = await self.client.block(chat)
        self.model.blocked.add(chat)
        who = self.model.title(chat)
        if not new:
            self.model.feedback = f"{who} is blocked already; /unblock undoes it."
            return
        self.model.note(
            chat,
            LineKind.NOTICE,
            f"You blocked {who}: its messages no longer reach you and you cannot write to it "
            "(it is not told). /unblock undoes this.",
        )

    async def unblock(self, _argument: str) -> None:
        chat = self._open_chat("/unblock unblocks that chat")
        if chat is None:
            return
        await self.client.unblock(chat)
        self.model.blocked.discard(chat)
        who = self.model.title(chat)
        self.model.note(chat, LineKind.NOTICE, f"You unblocked {who}: you can write again.")

    async def report(self, argument: str) -> None:
        """``/report <reason> [block]`` for the open chat; its last message to us is named,
        so that the operator can tell which delivery (and template) it is about."""
        reason, _, rest = argument.lower().partition(" ")
        reasons = ", ".join(REPORT_REASONS)
        chat = self._open_chat(f"/report reports that chat ({reasons})")
        if chat is None:
            return
        who = self.model.title(chat)
        if reason not in REPORT_REASONS:
            said = f"“{reason}” is not a reason. " if reason else ""
            self.model.feedback = (
                f"{said}Report {who} for: {reasons}; add “block” to block it too, "
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
        text = f"You reported {who} to your operator ({reason})."
        if block:
            self.model.blocked.add(chat)
            text += f" {who} is blocked too; /unblock undoes that."
        self.model.note(chat, LineKind.NOTICE, text)

    # --- sending -----------------------------------------------------------------------------

    async def send(self, text: str) -> None:
        chat = self.model.open_chat
        if chat is None:
            self.model.feedback = "Open a chat first: /new +49… (the number of the other person)."
            return
        try:
            sent = await self.client.send_text(chat, text)
        except IdentityNotTrusted:
            self._not_sent(chat, text)
            return
        except (RelayError, httpx.HTTPError, CryptoError) as exc:
            if isinstance(exc, RelayError) and exc.code == ErrorCode.BLOCKED_BY_YOU:
                self.model.blocked.add(chat)
            self.model.note(
                chat, LineKind.ERROR, f"Not sent: “{shorten(text)}”: {self._why(exc, chat)}."
            )
            return
        if sent.pending:
            self.model.feedback = f"{PENDING_TEXT} /delete removes it."

    async def delete(self, argument: str) -> None:
        """``/delete [N]``: delete a message of the open chat that waits for the network."""
        chat = self._open_chat("/delete removes a message of it that waits for the network")
        if chat is None:
            return
        waiting = self.client.pending(chat)
        if not waiting:
            self.model.feedback = "No message of this chat waits for the network."
            return
        if not argument:
            chosen = waiting[-1]
        elif argument.isdigit() and 1 <= int(argument) <= len(waiting):
            chosen = waiting[int(argument) - 1]
        else:
            self.model.feedback = (
                f"/delete 1 to /delete {len(waiting)}: the waiting messages, oldest first."
            )
            return
        if await self.client.delete_pending(chosen.local_id):
            self.model.feedback = "Deleted; it will not be sent."
        else:
            self.model.feedback = "It went out just now; it can no longer be deleted."

    def _why(self, exc: RelayError | httpx.HTTPError | CryptoError, chat: str) -> str:
        if isinstance(exc, RelayError):
            return relay_error_text(exc, self.model.title(chat), APP_HINTS)
        return error_text(exc, self.model.title(chat), APP_HINTS) or str(exc)

    def _not_sent(self, chat: str, text: str) -> None:
        # The banner over the chat explains it at length (identity_text).
        self.model.note(
            chat,
            LineKind.WARNING,
            f"Not sent: “{shorten(text)}”. The security keys of {self.model.title(chat)} "
            "changed; compare safety numbers (/safety), then /trust.",
        )

    async def choose(self, argument: str) -> None:
        """``/choose N``: answer the open chat's latest interactive message (or template
        message with quick replies) with its option N (or an option's id or title)."""
        chat = self._open_chat("/choose answers its buttons, list or quick replies")
        if chat is None:
            return
        found = self._latest_choices(chat)
        if found is None:
            self.model.feedback = (
                f"{self.model.title(chat)} asked nothing to choose from: /choose answers "
                "buttons, lists and quick replies."
            )
            return
        message_id, choices = found
        offered = " · ".join(c.label() for c in choices)
        if not argument:
            self.model.feedback = f"Choose with /choose and a number: {offered}"
            return
        if argument.isdigit() and 1 <= int(argument) <= len(choices):
            choice = choices[int(argument) - 1]
        else:
            try:
                choice = pick(choices, argument)
            except ValueError:
                self.model.feedback = (
                    f"There is no option “{argument}”. Choose with /choose N: {offered}"
                )
                return
        try:
            if choice.button_index is not None:
                await self.client.tap_quick_reply(chat, message_id, choice.button_index)
            else:
                await self.client.answer(chat, message_id, choice.id)
        except IdentityNotTrusted:
            self._not_sent(chat, choice.title)

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
            rendered = self.model.rendered.get(message.message_id)
            if isinstance(payload, Template) and rendered is not None:
                quick = quick_reply_choices(rendered)
                if quick:
                    return message.message_id, quick
        return None

"""Answering what a business offers to choose: buttons, list rows and quick replies."""

from __future__ import annotations

from tresen.client.choices import Choice, interactive_choices, pick, quick_reply_choices
from tresen.client.directory import Directory
from tresen.client.sending import Sender, SentMessage
from tresen.client.store import LocalStore
from tresen.client.templates import TemplateBook, check_template_message
from tresen.wire.e2e import (
    ButtonReply,
    Interactive,
    InteractiveReply,
    Payload,
    ReplyKind,
    Template,
    Unsupported,
    decode_payload,
)
from tresen.wire.templates import RenderedTemplate

__all__ = ["Replies"]


class Replies:
    def __init__(
        self, store: LocalStore, directory: Directory, templates: TemplateBook, sender: Sender
    ) -> None:
        self.store = store
        self.directory = directory
        self.templates = templates
        self.sender = sender

    async def answer(self, to: str, message_id: str, option_id: str) -> SentMessage:
        account_id = await self.directory.resolve(to)
        payload = self._received(account_id, message_id)
        if not isinstance(payload, Interactive):
            raise ValueError(f"message {message_id} is not an interactive message")
        choices = interactive_choices(payload)
        choice = next((c for c in choices if c.id == option_id), None)
        if choice is None:
            raise ValueError(
                f"“{option_id}” is not an option of message {message_id}; the options are "
                + ", ".join(f"{c.id} ({c.title})" for c in choices)
            )
        kind = ReplyKind.BUTTON_REPLY if payload.type == "button" else ReplyKind.LIST_REPLY
        reply = InteractiveReply(
            kind=kind,
            message_id=message_id,
            id=choice.id,
            title=choice.title,
            description=choice.description,
        )
        return await self.sender.send(account_id, reply)

    async def tap_quick_reply(self, to: str, message_id: str, index: int) -> SentMessage:
        account_id = await self.directory.resolve(to)
        payload = self._received(account_id, message_id)
        if not isinstance(payload, Template):
            raise ValueError(f"message {message_id} is not a template message")
        rendered = await self._rendered(payload, account_id)
        quick = quick_reply_choices(rendered)
        choice = next((c for c in quick if c.button_index == index), None)
        if choice is None:
            offered = ", ".join(f"{c.button_index} ({c.title})" for c in quick) or "none"
            raise ValueError(
                f"button {index} of message {message_id} is not a quick reply; its quick "
                f"replies are {offered}"
            )
        button = rendered.buttons[index]
        tap = ButtonReply(
            message_id=message_id, payload=button.payload or button.text, text=button.text
        )
        return await self.sender.send(account_id, tap)

    async def choices(self, message_id: str) -> list[Choice]:
        stored = self.store.message(message_id)
        if stored is None or stored.outgoing or stored.payload is None:
            return []
        try:
            payload = decode_payload(stored.payload)
        except ValueError:
            return []
        if isinstance(payload, Interactive):
            return interactive_choices(payload)
        if isinstance(payload, Template):
            return quick_reply_choices(await self._rendered(payload, stored.sender_account))
        return []

    async def choose(self, to: str, message_id: str, option: str) -> SentMessage:
        account_id = await self.directory.resolve(to)
        payload = self._received(account_id, message_id)
        if not isinstance(payload, Interactive | Template):
            raise ValueError(f"message {message_id} offers nothing to choose")
        choice = pick(await self.choices(message_id), option)
        if choice.button_index is not None:
            return await self.tap_quick_reply(account_id, message_id, choice.button_index)
        return await self.answer(account_id, message_id, choice.id)

    def _received(self, chat: str, message_id: str) -> Payload | Unsupported:
        """The payload of a message received in ``chat``; ``ValueError`` if there is none."""
        stored = self.store.message(message_id)
        if stored is None or stored.chat != chat or stored.outgoing or stored.payload is None:
            raise ValueError(f"no message {message_id} was received in this chat")
        return decode_payload(stored.payload)

    async def _rendered(self, payload: Template, sender: str) -> RenderedTemplate:
        template = await self.templates.template(int(payload.template_id))
        return check_template_message(template, payload, sender=sender, template_ref=None)

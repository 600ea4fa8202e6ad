"""What an agent does in a conversation, whether from a page or the inbox's JSON API.

Each action checks its input, does it, and adds it to the conversation's activity line (which
tells the live pages). A refused action raises :class:`Refused` with a sentence for the agent.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.cloudapi.requests import SendRequest, parse_message_request
from tresen.gateway.inbox.agents import Agent, Agents
from tresen.gateway.inbox.attaching import FileRefused, file_kind
from tresen.gateway.inbox.conversations import Conversations, Status
from tresen.gateway.inbox.i18n import N_, Refused
from tresen.gateway.inbox.quick import QuickReplies
from tresen.gateway.media.library import MediaRefused
from tresen.gateway.service import Gateway

__all__ = ["MAX_BUTTON_TITLE", "REACTIONS", "SNOOZE_CHOICES", "Actions"]

SNOOZE_CHOICES = {
    "3600": N_("1 hour"),
    "14400": N_("4 hours"),
    "86400": N_("1 day"),
    "604800": N_("1 week"),
}

# The few reactions the composer offers, as in the WhatsApp Business app's quick bar.
REACTIONS = ("👍", "❤️", "😂", "😮", "🙏")
MAX_BUTTON_TITLE = 20


class Actions:
    def __init__(
        self,
        gateway: Gateway,
        conversations: Conversations,
        agents: Agents,
        quick: QuickReplies,
    ) -> None:
        self.gateway = gateway
        self.conversations = conversations
        self.agents = agents
        self.quick = quick

    async def send(self, who: Agent, contact: str, message: dict[str, Any], summary: str) -> str:
        """Send ``message`` (a Cloud API message body without its recipient) to the customer
        of ``contact`` through the gateway's own send path; its wamid."""
        found = await self.gateway.store.contact(contact)
        if found is None:
            raise Refused("there is no such conversation")
        body = {"messaging_product": "whatsapp", "recipient": found.user_id, **message}
        try:
            request = parse_message_request(body)
            if not isinstance(request, SendRequest):
                raise Refused("that is not a message")
            result = await self.gateway.send(request)
        except GraphError as exc:
            raise Refused("not sent: {reason}", reason=exc.details) from exc
        await self.conversations.record(contact, who.id, "reply", summary[:200])
        return result.wamid

    async def reply(self, who: Agent, contact: str, text: str, context: str | None = None) -> str:
        """Send ``text`` (or the quick reply it names, ``/shortcut``), quoting the message
        ``context`` (a wamid of this conversation) if given; the message's wamid."""
        if not text.strip():
            raise Refused("nothing to send")
        expanded = await self.quick.expand(text)
        if expanded is None and text.strip().startswith("/") and " " not in text.strip():
            raise Refused("there is no quick reply {shortcut}", shortcut=text.strip())
        text = (expanded or text).replace("\r\n", "\n")
        message: dict[str, Any] = {"type": "text", "text": {"body": text}}
        if context:
            message["context"] = {"message_id": await self._message_of(contact, context)}
        return await self.send(who, contact, message, text)

    async def attach(
        self,
        who: Agent,
        contact: str,
        file: BinaryIO,
        *,
        mime_type: str,
        filename: str | None,
        caption: str = "",
        context: str | None = None,
    ) -> str:
        """Send ``file`` as the image, video, audio, sticker or document its MIME type makes
        it, with ``caption``, quoting ``context`` if given; the message's wamid. Kept as a
        media id like an API upload, so the thread shows it as it shows the customer's."""
        caption = caption.replace("\r\n", "\n").strip()
        size = file.seek(0, os.SEEK_END)
        file.seek(0)
        head = file.read(32)
        media = self.gateway.media
        kind = file_kind(media.limits, mime_type, size, head, caption)
        if await self.gateway.store.contact(contact) is None:
            raise Refused("there is no such conversation")
        quoted = await self._message_of(contact, context) if context else None
        try:
            record = await media.save_upload(file, mime_type, filename, None)
        except MediaRefused as exc:
            raise FileRefused(
                "not sent: {reason}", code="file_refused", reason=exc.details
            ) from None
        described: dict[str, Any] = {"id": record.id}
        if caption:
            described["caption"] = caption
        if kind == "document" and record.filename:
            described["filename"] = record.filename
        message: dict[str, Any] = {"type": str(kind), str(kind): described}
        if quoted is not None:
            message["context"] = {"message_id": quoted}
        summary = caption or record.filename or str(kind)
        try:
            return await self.send(who, contact, message, summary)
        except BaseException:
            await media.delete(record.id)  # not sent: nothing refers to it
            raise

    async def note(self, who: Agent, contact: str, text: str) -> None:
        """A private note: kept in the gateway for the team, never sent to anyone."""
        if not text.strip():
            raise Refused("an empty note was not kept")
        await self.conversations.record(contact, who.id, "note", text.strip())

    async def assign(self, who: Agent, contact: str, agent_id: int | None) -> Agent | None:
        """Assign the conversation to ``agent_id`` (``None``: to no one); the assignee."""
        if agent_id is None:
            await self.conversations.assign(contact, None)
            await self.conversations.record(contact, who.id, "assign", "")
            return None
        target = await self.agents.get(agent_id)
        if target is None or not target.active:
            raise Refused("there is no such agent")
        await self.conversations.assign(contact, target.id)
        await self.conversations.record(contact, who.id, "assign", target.display_name)
        shown = await self.conversations.show(contact, limit=0, mark_read=False)
        if shown is not None and shown.conversation.status is Status.BOT:
            # Someone of the team has it now: the bot stops answering.
            await self.conversations.set_status(contact, Status.OPEN)
            await self.conversations.record(contact, who.id, "status", str(Status.OPEN))
        return target

    async def set_status(
        self, who: Agent, contact: str, status: str, snooze: str | None = None
    ) -> Status:
        """Set the conversation's status; snoozed for one of ``SNOOZE_CHOICES`` (seconds)."""
        if status not in {str(s) for s in Status}:
            raise Refused("choose a status")
        until = None
        if status == str(Status.SNOOZED):
            if snooze not in SNOOZE_CHOICES:
                raise Refused("choose how long to snooze")
            until = self.conversations.clock.now_ms() + int(snooze) * 1000
        await self.conversations.set_status(contact, Status(status), until)
        await self.conversations.record(contact, who.id, "status", status)
        return Status(status)

    async def label(self, who: Agent, contact: str, name: str) -> str:
        added = await self.conversations.labels.put(contact, name)
        await self.conversations.record(contact, who.id, "label", added)
        return added

    async def unlabel(self, who: Agent, contact: str, name: str) -> None:
        await self.conversations.labels.take_off(contact, name)
        await self.conversations.record(contact, who.id, "unlabel", name)

    async def _message_of(self, contact: str, wamid: str) -> str:
        """``wamid``, when it is a message of this conversation."""
        found = await self.gateway.store.message(wamid[:80])
        if found is None or found.contact != contact:
            raise Refused("that message is not in this conversation")
        return found.wamid

    async def react(self, who: Agent, contact: str, wamid: str, emoji: str) -> str:
        """Put ``emoji`` (one of ``REACTIONS``; empty: take the reaction back) on the
        customer's message ``wamid``; the reaction's wamid."""
        if emoji and emoji not in REACTIONS:
            raise Refused("choose one of the reactions offered")
        found = await self.gateway.store.message(wamid[:80])
        if found is None or found.contact != contact or found.direction != "in":
            raise Refused("only a message from the customer takes a reaction")
        message = {"type": "reaction", "reaction": {"message_id": found.wamid, "emoji": emoji}}
        summary = f"Reacted {emoji}" if emoji else "Removed a reaction"
        return await self.send(who, contact, message, summary)

    async def buttons(
        self,
        who: Agent,
        contact: str,
        body: str,
        titles: list[str],
        context: str | None = None,
    ) -> str:
        """Send ``body`` with 1 to 3 reply buttons titled ``titles``; the message's wamid."""
        body = body.replace("\r\n", "\n").strip()
        if not body:
            raise Refused("write the message the buttons answer")
        if len(body) > 1024:
            raise Refused("the message is at most {n} characters", n=1024)
        titles = [t.strip() for t in titles if t.strip()]
        if not 1 <= len(titles) <= 3:
            raise Refused("give one to three buttons")
        if any(len(t) > MAX_BUTTON_TITLE for t in titles):
            raise Refused("a button's title is at most {n} characters", n=MAX_BUTTON_TITLE)
        if len(set(titles)) != len(titles):
            raise Refused("each button needs a title of its own")
        message: dict[str, Any] = {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": body},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": f"button-{i + 1}", "title": title}}
                        for i, title in enumerate(titles)
                    ]
                },
            },
        }
        if context:
            message["context"] = {"message_id": await self._message_of(contact, context)}
        return await self.send(who, contact, message, body)

    async def send_template(
        self,
        who: Agent,
        contact: str,
        name: str,
        language: str,
        components: list[dict[str, Any]],
        summary: str,
    ) -> str:
        """Send the approved template ``name`` in ``language`` with the Cloud API
        ``components``; the message's wamid."""
        message = {
            "type": "template",
            "template": {"name": name, "language": {"code": language}, "components": components},
        }
        return await self.send(who, contact, message, summary)

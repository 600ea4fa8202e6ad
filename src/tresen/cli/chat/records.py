"""What ``tresen chat … --json`` prints: one JSON object per result or event, for machines
(field names are stable; texts for people come from ``tresen.client.presentation``)."""

from __future__ import annotations

from typing import Any

import msgspec

from tresen.cli.chat.runner import name_of
from tresen.client.business import Business, BusinessSummary
from tresen.client.choices import Choice, interactive_choices, interactive_text, quick_reply_choices
from tresen.client.consent import BusinessConsents, ConsentRecord
from tresen.client.events import (
    Connected,
    ConsentChanged,
    DecryptionFailed,
    DeviceAdded,
    Disconnected,
    Drained,
    Event,
    IdentityChanged,
    KeysReplenished,
    KeyTransparencyFailed,
    MessageEvent,
    MessageWaiting,
    PendingSent,
    StatusChanged,
    TypingStarted,
)
from tresen.client.presentation import ChatLine, status_mark
from tresen.client.sdk import Client
from tresen.wire.e2e import (
    ButtonReply,
    Interactive,
    InteractiveReply,
    Media,
    Reaction,
    Template,
    Text,
    Unsupported,
)
from tresen.wire.templates import RenderedTemplate

__all__ = [
    "business_record",
    "consent_change_record",
    "consent_changed_record",
    "dashboard_record",
    "event_record",
    "line_record",
    "option_record",
    "summary_record",
]


def business_record(business: Business, now_ms: int) -> dict[str, Any]:
    profile = business.profile
    record = {k: v for k, v in profile.to_json().items() if k != "certificate"}
    return {
        **record,
        "phone": business.phone,
        "verified": business.verified,
        "tick": str(business.tick.state),
        "tick_reason": business.tick.reason,
        "certificate_serial": business.tick.serial if business.verified else None,
        "certificate_expires_ms": business.tick.expires_ms,
        "open_now": profile.open_now(now_ms),
        "opening_status": profile.opening_status(now_ms),
        "hours_lines": profile.hours_lines() if profile.has_hours else [],
        "checked_ms": business.checked_ms,
    }


def summary_record(hit: BusinessSummary) -> dict[str, Any]:
    return {
        "account_id": hit.account_id,
        "display_name": hit.display_name,
        "about": hit.about,
        "category": hit.category,
        "verified": hit.verified,
        "tick": str(hit.tick.state),
        "tick_reason": hit.tick.reason,
    }


def dashboard_record(line: BusinessConsents) -> dict[str, Any]:
    return {
        "account_id": line.account_id,
        "display_name": line.display_name,
        "opted_in": list(line.opted_in_scopes),
        "consents": {scope: _record_fields(r) for scope, r in line.consents.items()},
    }


def _record_fields(record: ConsentRecord) -> dict[str, Any]:
    return {
        "state": record.state,
        "source": record.source,
        "decided_ms": record.decided_ms,
        "updated_ms": record.updated_ms,
        "evidence": record.evidence,
        "evidence_ms": record.evidence_ms,
    }


def consent_change_record(records: list[ConsentRecord], business: str) -> dict[str, Any]:
    return {
        "business": business,
        "business_name": next((r.business_name for r in records if r.business_name), None),
        "consents": {r.scope: _record_fields(r) for r in records},
    }


def consent_changed_record(event: ConsentChanged) -> dict[str, Any]:
    return {
        "event": "consent_changed",
        "business": event.business,
        "business_name": event.business_name,
        "scopes": list(event.scopes),
        "state": event.state,
        "keyword": event.keyword,
        "confirmation": event.confirmation,
        "failed": event.failed,
    }


def option_record(choice: Choice) -> dict[str, Any]:
    """One option of a message, as ``tresen chat choose`` takes it (its ``number`` or
    ``id``)."""
    return {
        "number": choice.number,
        "id": choice.id,
        "title": choice.title,
        "description": choice.description,
        "section": choice.section,
        "button_index": choice.button_index,
    }


def line_record(line: ChatLine) -> dict[str, Any]:
    """A line of ``tresen chat read``: the message as the app shows it, with its status."""
    mark = status_mark(line.status, line.error) if line.outgoing else None
    return {
        "message_id": line.message_id,
        "kind": str(line.kind),
        "outgoing": line.outgoing,
        "text": line.text,
        "marker": line.marker,
        "status": None if line.status is None else str(line.status),
        "mark": None if mark is None else str(mark),
        "server_ms": line.at_ms,
    }


def _chat_fields(client: Client, chat: str) -> dict[str, Any]:
    """Whether a chat is with a business, and whether this device's last check of the
    operator's certificate earned it the tick (``None``: never checked)."""
    known = client.known_business(chat)
    if known is None:
        return {"business": False, "verified": False, "business_name": None}
    return {
        "business": True,
        "verified": known.verified if known.checked_ms else None,
        "business_name": known.display_name,
    }


async def _phone(client: Client, account_id: str) -> str:
    if account_id == client.account_id and client.phone:
        return client.phone
    return await client.phone_of(account_id) or account_id


def _payload_fields(payload: object) -> dict[str, Any]:
    if isinstance(payload, Text):
        fields: dict[str, Any] = {"type": "text", "text": payload.text}
        if payload.context is not None:
            fields["reply_to"] = payload.context.message_id
        return fields
    if isinstance(payload, Reaction):
        return {"type": "reaction", "reaction_to": payload.message_id, "emoji": payload.emoji}
    if isinstance(payload, Unsupported):
        return {"type": "unsupported", "tag": payload.tag, "version": payload.v}
    if isinstance(payload, Media):
        return {
            "type": "media",
            "kind": str(payload.kind),
            "filename": payload.filename,
            "mime_type": payload.mime_type,
            "size": payload.plain_size,
            "caption": payload.caption,
        }
    if isinstance(payload, Template):
        return {"type": "template"}
    if isinstance(payload, Interactive):
        fields = {
            "type": "interactive",
            "text": interactive_text(payload),
            "interactive": {
                "type": str(payload.type),
                "header": payload.header,
                "body": payload.body,
                "footer": payload.footer,
                "button": payload.button,
            },
            "options": [option_record(c) for c in interactive_choices(payload)],
        }
        if payload.context is not None:
            fields["reply_to"] = payload.context.message_id
        return fields
    if isinstance(payload, InteractiveReply):
        return {
            "type": "interactive_reply",
            "text": payload.title,
            "reply_to": payload.message_id,
            "reply": {
                "kind": str(payload.kind),
                "id": payload.id,
                "title": payload.title,
                "description": payload.description,
            },
        }
    if isinstance(payload, ButtonReply):
        return {
            "type": "button_reply",
            "text": payload.text,
            "reply_to": payload.message_id,
            "payload": payload.payload,
        }
    tag = getattr(getattr(payload, "__struct_config__", None), "tag", None)
    return {"type": str(tag or type(payload).__name__.lower())}


def _template_fields(payload: Template, rendered: RenderedTemplate | None) -> dict[str, Any]:
    """A template message's rendered text (``None`` if it could not be rendered: the content
    is never shown otherwise), which template it is and its quick replies."""
    return {
        "text": None if rendered is None else rendered.text(),
        "template": {
            "id": payload.template_id,
            "name": payload.name,
            "category": None if rendered is None else str(rendered.category),
        },
        "options": (
            [] if rendered is None else [option_record(c) for c in quick_reply_choices(rendered)]
        ),
    }


async def event_record(
    client: Client, event: Event, rendered: RenderedTemplate | None = None
) -> dict[str, Any]:
    """An event of ``tresen chat listen --json``; phone numbers in ``chat_phone``, ``from``
    and ``phone``, the names a person would read in ``chat_name`` and ``from_name``."""
    if isinstance(event, MessageEvent):
        payload = event.payload
        return {
            "event": "message",
            "message_id": event.message_id,
            "chat": event.chat,
            "chat_phone": await _phone(client, event.chat),
            "chat_name": await name_of(client, event.chat),
            **_chat_fields(client, event.chat),
            "from": await _phone(client, event.sender),
            "from_name": await name_of(client, event.sender),
            "from_device": event.sender_device,
            "outgoing": event.outgoing,
            "text": payload.text if isinstance(payload, Text) else None,
            **_payload_fields(payload),
            **(_template_fields(payload, rendered) if isinstance(payload, Template) else {}),
            "server_ms": event.server_ms,
        }
    if isinstance(event, StatusChanged):
        pricing = event.pricing
        return {
            "event": "status",
            "message_id": event.message_id,
            "chat": event.chat,
            **_chat_fields(client, event.chat),
            "status": str(event.status),
            "server_ms": event.server_ms,
            "pricing": None if pricing is None else msgspec.to_builtins(pricing),
            "error_code": event.error_code,
            "error": event.error,
        }
    if isinstance(event, IdentityChanged | DeviceAdded):
        return {
            "event": "identity_changed" if isinstance(event, IdentityChanged) else "device_added",
            "account_id": event.account_id,
            "phone": await _phone(client, event.account_id),
            "name": await name_of(client, event.account_id),
            "device_id": event.device_id,
        }
    if isinstance(event, KeyTransparencyFailed):
        return {
            "event": "key_transparency_failed",
            "account_id": event.account_id,
            "phone": await _phone(client, event.account_id),
            "name": await name_of(client, event.account_id),
            "reason": event.reason,
            "forked": event.forked,
        }
    if isinstance(event, DecryptionFailed):
        return {
            "event": "decryption_failed",
            "message_id": event.message_id,
            "from": await _phone(client, event.sender),
            "from_device": event.sender_device,
            "reason": event.reason,
        }
    if isinstance(event, KeysReplenished):
        return {"event": "keys_replenished", "one_time_keys": event.one_time_keys}
    if isinstance(event, ConsentChanged):
        return consent_changed_record(event)
    if isinstance(event, TypingStarted):
        return {
            "event": "typing",
            "chat": event.chat,
            "chat_phone": await _phone(client, event.chat),
            **_chat_fields(client, event.chat),
            "message_id": event.message_id,
            "until_ms": event.until_ms,
        }
    if isinstance(event, MessageWaiting):
        return {
            "event": "waiting",
            "message_id": event.message_id,
            "chat": event.sender,
            "from": await _phone(client, event.sender),
            "from_name": await name_of(client, event.sender),
            "from_device": event.sender_device,
            "reason": event.reason,
        }
    if isinstance(event, PendingSent):
        return {
            "event": "pending_sent",
            "local_id": event.local_id,
            "message_id": event.message_id,
            "chat": event.chat,
            "server_ms": event.server_ms,
        }
    if isinstance(event, Disconnected):
        return {"event": "disconnected", "reason": event.reason}
    if isinstance(event, Connected):
        return {"event": "connected"}
    assert isinstance(event, Drained)
    return {"event": "drained"}

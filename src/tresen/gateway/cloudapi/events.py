"""The ``value`` of the Cloud API's ``messages`` webhooks: customers' messages and statuses.

Both carry ``contacts[0]`` with the customer's profile name, ``wa_id`` and ``user_id`` (pywa
4.5 needs them on statuses too), and the ``metadata`` naming this number.
"""

from __future__ import annotations

import json
from typing import Any

from tresen.gateway.store import Contact, StoredMessage

__all__ = ["message_value", "metadata", "status_value"]


def metadata(phone_number_id: str) -> dict[str, str]:
    return {"display_phone_number": phone_number_id, "phone_number_id": phone_number_id}


def _seconds(ms: int) -> str:
    return str(ms // 1000)


def status_value(
    phone_number_id: str,
    message: StoredMessage,
    contact: Contact,
    status: str,
    at_ms: int,
    pricing: str | None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A status of ``message``; ``pricing`` (JSON) goes on ``delivered`` and ``read``,
    ``errors`` on ``failed``."""
    entry: dict[str, Any] = {
        "id": message.wamid,
        "status": status,
        "timestamp": _seconds(at_ms),
        "recipient_user_id": contact.user_id,
    }
    if contact.wa_id is not None:
        entry["recipient_id"] = contact.wa_id
    if message.callback_data is not None:
        entry["biz_opaque_callback_data"] = message.callback_data
    if pricing is not None:
        entry["pricing"] = json.loads(pricing)
    if errors:
        entry["errors"] = errors
    return {
        "messaging_product": "whatsapp",
        "metadata": metadata(phone_number_id),
        "contacts": [contact.webhook_contact()],
        "statuses": [entry],
    }


def message_value(phone_number_id: str, contact: Contact, entry: dict[str, Any]) -> dict[str, Any]:
    """A customer's message ``entry`` (``messages[0]``)."""
    return {
        "messaging_product": "whatsapp",
        "metadata": metadata(phone_number_id),
        "contacts": [contact.webhook_contact()],
        "messages": [entry],
    }

"""The Cloud API's webhook envelope and the fields a subscription can ask for."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["FIELDS", "OBJECT", "encode_event"]

OBJECT = "whatsapp_business_account"

# The fields of the WhatsApp Business Account webhook (reference §5.1).
FIELDS: frozenset[str] = frozenset(
    {
        "messages",
        "message_template_status_update",
        "message_template_quality_update",
        "message_template_components_update",
        "template_category_update",
        "phone_number_quality_update",
        "phone_number_name_update",
        "account_update",
        "account_alerts",
        "business_capability_update",
        "security",
        "flows",
        "user_preferences",
        "calls",
        "smb_message_echoes",
        "smb_app_state_sync",
        "history",
        "group_lifecycle_update",
        "group_settings_update",
        "group_participants_update",
    }
)


def encode_event(*, waba_id: str, field: str, value: Any, time_s: int | None = None) -> bytes:
    """One change in one entry, as compact JSON with non-ASCII escaped (``\\u00fc``) like
    Meta's: receivers verify the signature over these exact bytes, and pywa reads only
    ``entry[0].changes[0]``."""
    entry: dict[str, Any] = {"id": waba_id}
    if time_s is not None:
        entry["time"] = time_s
    entry["changes"] = [{"field": field, "value": value}]
    envelope = {"object": OBJECT, "entry": [entry]}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=True).encode("ascii")

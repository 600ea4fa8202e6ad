"""The messages the subscriber lists send customers, and how they go out."""

from __future__ import annotations

from typing import Any, Protocol

from tresen.core.logging import get_logger
from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.cloudapi.requests import SendRequest, parse_message_request
from tresen.gateway.service import Gateway
from tresen.gateway.subscribers.model import Purpose, SubscriberList

__all__ = [
    "CONFIRM_BUTTON",
    "GatewayMessenger",
    "Messenger",
    "confirmation_message",
    "subscribed_message",
]

log = get_logger(__name__)

CONFIRM_BUTTON = "subscribe:"
"""The id of a utility list's confirm button: ``subscribe:<list id>``."""


class Messenger(Protocol):
    async def phone_of(self, account_id: str) -> str | None:
        """The number of a customer who wrote to the business."""
        ...

    async def send_message(self, account_id: str, message: dict[str, Any]) -> None:
        """Send a Cloud API message body (without recipient) to a customer; never raises for
        a message the relay refused (it is logged)."""
        ...


class GatewayMessenger:
    """Sends through the gateway, as the automation's answers go (webhooks and inbox see
    them like any message of the business)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def phone_of(self, account_id: str) -> str | None:
        contact = await self.gateway.store.contact(account_id)
        return contact.phone if contact is not None else None

    async def send_message(self, account_id: str, message: dict[str, Any]) -> None:
        contact = await self.gateway.contact_for_account(account_id)
        body = {"messaging_product": "whatsapp", "recipient": contact.user_id, **message}
        try:
            request = parse_message_request(body)
            assert isinstance(request, SendRequest)
            await self.gateway.send(request)
        except GraphError as exc:
            log.warning("subscription message not sent", code=exc.code, error=exc.details)


_ASK = {
    "en": "Reply {word} to confirm. You can send STOP at any time to unsubscribe.",
    "de": "Antworten Sie {word}, um zu bestätigen. Mit ABMELDEN können Sie sich jederzeit "
    "abmelden.",
}
_DEFAULT = {
    "en": "You asked to receive “{name}”.",
    "de": "Sie möchten „{name}“ erhalten.",
}
_CONFIRM_TITLE = {"en": "Confirm", "de": "Bestätigen"}
_SUBSCRIBED = {
    "en": "You are subscribed to “{name}”.",
    "de": "Sie haben „{name}“ abonniert.",
}


def confirmation_message(entry: SubscriberList, language: str, word: str) -> dict[str, Any]:
    """What a customer who wrote ``START <KEYWORD>`` receives: the business's confirmation
    and how to confirm (a marketing list: the typed ``word``, which their own app signs as
    their opt-in; a utility list: also a button)."""
    language = language if language in _ASK else "en"
    said = entry.confirmation or _DEFAULT[language].format(name=entry.name)
    body = f"{said}\n\n{_ASK[language].format(word=word)}"
    if entry.purpose is Purpose.MARKETING:
        return {"type": "text", "text": {"body": body[:4096]}}
    return {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": body[:1024]},
            "action": {
                "buttons": [
                    {
                        "type": "reply",
                        "reply": {
                            "id": f"{CONFIRM_BUTTON}{entry.id}",
                            "title": _CONFIRM_TITLE[language],
                        },
                    }
                ]
            },
        },
    }


def subscribed_message(entry: SubscriberList, language: str) -> dict[str, Any]:
    language = language if language in _SUBSCRIBED else "en"
    return {"type": "text", "text": {"body": _SUBSCRIBED[language].format(name=entry.name)}}

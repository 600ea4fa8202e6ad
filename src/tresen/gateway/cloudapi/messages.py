"""``POST /{version}/{phone_number_id}/messages``: sending, marking read, typing.

Shared by the FastAPI route (which documents it) and :class:`MessagesFastPath`, the ASGI
front that answers it without the framework's routing and dependency injection.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from tresen.core.fields import INT63_MAX, INT63_MIN
from tresen.core.http import bearer_token
from tresen.core.ratelimit import TokenBuckets
from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.cloudapi.requests import (
    ReadRequest,
    Recipient,
    SendRequest,
    parse_message_request,
)
from tresen.gateway.service import Gateway
from tresen.gateway.store import Contact

__all__ = ["authorize", "check_phone", "decode_json", "request_token", "send_messages"]

_decode = msgspec.json.Decoder()


def request_token(authorization: str | None, access_token: str | None) -> str | None:
    """The API token of a request: ``Authorization: Bearer …``, else the ``access_token``
    query parameter (Graph accepts either)."""
    return bearer_token(authorization) or access_token or None


async def authorize(gateway: Gateway, buckets: TokenBuckets, token: str | None) -> Gateway:
    """The gateway, once ``token`` is a current API token within its rate (190, 104 or 4
    otherwise)."""
    if token is None:
        raise GraphError(
            104, "An access token is required to request this resource.", http_status=401
        )
    if (
        len(token) > MAX_TOKEN_CHARS
        or not token.isprintable()
        or not await gateway.store.token_valid(token)
    ):
        raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")
    wait_ms = buckets.take(token)
    if wait_ms:
        raise GraphError(
            4,
            "Application request limit reached: too many calls with this token",
            extra={"retry_after_ms": wait_ms},
        )
    return gateway


MAX_TOKEN_CHARS = 512
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def decode_json(raw: bytes) -> Any:
    """The JSON of a request body, refused (100) if malformed or if it holds a NUL character
    or an integer beyond 64 bits anywhere: neither means anything in the Cloud API, and
    neither can be stored (PostgreSQL text holds no NUL, its integers have 64 bits)."""
    try:
        body = _decode.decode(raw)
    except msgspec.DecodeError as exc:
        raise GraphError(100, f"The request body is not valid JSON: {exc}") from None
    # Both need bytes a scan finds quickly: the walk only runs for bodies that have them.
    if b"\\u0000" in raw or _LONG_NUMBER.search(raw):
        _check_values(body)
    return body


def _check_values(body: Any) -> None:
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise GraphError(100, "The request body holds a NUL character")
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, int) and not INT63_MIN <= value <= INT63_MAX:
            raise GraphError(100, "The request body holds an integer beyond 64 bits")


def clean_text(value: str | None, param: str) -> None:
    """Refuse (100) a path or query parameter with a NUL or other control character."""
    if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise GraphError(100, f"Param {param} holds a control character")


def check_phone(gateway: Gateway, node: str) -> None:
    if node != gateway.phone_number_id:
        raise GraphError(
            100,
            f"Unsupported request: object with ID '{node}' does not exist on this gateway "
            f"(its phone_number_id is {gateway.phone_number_id})",
            subcode=33,
        )


async def send_messages(gateway: Gateway, node: str, body: Any) -> dict[str, Any]:
    """The answer to a messages request: a send's ids, or ``success`` for read/typing."""
    check_phone(gateway, node)
    parsed = parse_message_request(body)
    if isinstance(parsed, ReadRequest):
        await gateway.mark_read(parsed)
        return {"success": True}
    await _check_references(gateway, parsed)
    result = await gateway.send(parsed)
    contact: dict[str, Any] = {"input": result.input, "user_id": result.contact.user_id}
    if result.contact.wa_id is not None:
        contact["wa_id"] = result.contact.wa_id
    message: dict[str, Any] = {"id": result.wamid}
    if parsed.type == "template":
        message["message_status"] = "accepted"
    return {"messaging_product": "whatsapp", "contacts": [contact], "messages": [message]}


async def _check_references(gateway: Gateway, request: SendRequest) -> None:
    """A quoted or reacted-to message must be one of this conversation's: any 16 bytes make
    a well-formed wamid, and one of another business or of another customer's chat would
    show the customer a reference to nothing."""
    references: list[tuple[str, str]] = []
    if request.context_wamid is not None:
        references.append(("context['message_id']", request.context_wamid))
    if request.type == "reaction":
        references.append(("reaction['message_id']", str(request.content["message_id"])))
    for param, wamid in references:
        message = await gateway.store.message(wamid)
        contact = None if message is None else await gateway.store.contact(message.contact)
        if contact is None or not _same_customer(contact, request.recipient):
            raise GraphError(
                100,
                f"Param {param}: {wamid[:80]} is not a message of the conversation with "
                f"{request.recipient.input}",
            )


def _same_customer(contact: Contact, recipient: Recipient) -> bool:
    if recipient.user_id is not None:
        return contact.user_id == recipient.user_id
    return contact.phone is not None and contact.phone == recipient.phone

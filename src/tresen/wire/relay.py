"""Frames of the relay WebSocket protocol (``/v1/ws``), msgpack-encoded with msgspec.

Every frame is a map with a tag ``t`` and a protocol version ``v``. Unknown tags, missing or
mistyped fields and oversized frames are rejected with an ``error`` frame; the connection
stays open. See ``docs/protocol.md``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Any

import msgspec

from tresen.wire.fields import Int63, PositiveId, SafeLine

__all__ = [
    "PROTOCOL_VERSION",
    "Accepted",
    "Ack",
    "ClientFrame",
    "Delivered",
    "DeviceCiphertext",
    "ErrorFrame",
    "Failed",
    "Hello",
    "KeysLow",
    "MessageClass",
    "MessageFrame",
    "Ping",
    "Pong",
    "PricingFacts",
    "QueueEmpty",
    "Read",
    "Receipt",
    "Resend",
    "Resent",
    "Send",
    "ServerFrame",
    "decode_client_frame",
    "decode_pricing",
    "decode_server_frame",
    "encode",
    "encode_pricing",
    "rejected_send_id",
]

PROTOCOL_VERSION = 1

# Every field a client sends is bounded to what the relay can store (wire/fields.py): a value
# the database would refuse is answered with error 100 for that frame alone.
ClientMsgId = Annotated[SafeLine, msgspec.Meta(min_length=1, max_length=64)]
AccountRef = Annotated[SafeLine, msgspec.Meta(min_length=1, max_length=32)]
EnvelopeId = PositiveId
MessageRef = Annotated[SafeLine, msgspec.Meta(min_length=1, max_length=32)]
TemplateRef = Annotated[SafeLine, msgspec.Meta(max_length=128)]


class MessageClass(IntEnum):
    """What a send is, as far as the relay may know: never what it says."""

    SESSION = 0
    TEMPLATE = 1
    RECEIPT = 2
    SYSTEM = 3


class Frame(msgspec.Struct, tag_field="t", forbid_unknown_fields=True, kw_only=True):
    v: int = PROTOCOL_VERSION


# --- client -> relay -------------------------------------------------------------------------


class DeviceCiphertext(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One recipient device's copy: an Olm message ``{type: 0|1, body}``."""

    device_id: PositiveId
    type: Annotated[int, msgspec.Meta(ge=0, le=1)]
    body: bytes
    registration_id: Int63 | None = None


class Send(Frame, tag="send"):
    client_msg_id: ClientMsgId
    to: AccountRef
    per_device: Annotated[list[DeviceCiphertext], msgspec.Meta(min_length=1)]
    klass: MessageClass = MessageClass.SESSION
    template_ref: TemplateRef | None = None


# Omits an empty ``undecryptable`` (and ``v``, which defaults to 1), so that an ordinary ack
# is also understood by a relay that predates the field.
class Ack(Frame, tag="ack", omit_defaults=True):
    """The device has stored these envelopes; the relay deletes them.

    ``undecryptable`` names those of ``ids`` that are messages this device could not decrypt:
    they are deleted too, but do not count as delivered (no ``delivered``, no billing).
    """

    ids: Annotated[list[EnvelopeId], msgspec.Meta(min_length=1)]
    undecryptable: list[EnvelopeId] = []


class Receipt(Frame, tag="receipt"):
    """The user has read these messages; routed to their senders as ``read``."""

    message_ids: Annotated[list[MessageRef], msgspec.Meta(min_length=1)]


class Resend(Frame, tag="resend"):
    """A message this account sent, encrypted again for one device of its recipient (which
    could not decrypt its copy); answered with ``resent``."""

    client_msg_id: ClientMsgId
    message_id: MessageRef
    device_id: PositiveId
    type: Annotated[int, msgspec.Meta(ge=0, le=1)]
    body: bytes
    registration_id: Int63 | None = None


class Ping(Frame, tag="ping"):
    nonce: int = 0


ClientFrame = Send | Ack | Receipt | Resend | Ping


# --- relay -> client -------------------------------------------------------------------------


class Hello(Frame, tag="hello"):
    account_id: str = ""
    device_id: int = 0
    server_ms: int = 0
    one_time_keys: int = 0


class PricingFacts(msgspec.Struct, forbid_unknown_fields=True):
    """How a business's message is priced, in the Cloud API's terms (status webhooks)."""

    billable: bool
    pricing_model: str
    type: str
    category: str


class Accepted(Frame, tag="accepted"):
    client_msg_id: str = ""
    message_id: str = ""
    server_ms: int = 0
    duplicate: bool = False
    pricing: PricingFacts | None = None


class Resent(Frame, tag="resent"):
    """A ``resend`` is stored durably: ``resends`` of this message so far, this one included."""

    client_msg_id: str = ""
    message_id: str = ""
    device_id: int = 0
    resends: int = 0


class ErrorFrame(Frame, tag="error"):
    code: int = 0
    message: str = ""
    details: dict[str, Any] = {}
    client_msg_id: str | None = None


class MessageFrame(Frame, tag="message"):
    """An envelope: one ciphertext for this device. Ack ``id`` once stored."""

    id: int = 0
    message_id: str = ""
    sender: str = ""
    sender_device: int = 0
    klass: MessageClass = MessageClass.SESSION
    type: int = 0
    body: bytes = b""
    server_ms: int = 0
    template_ref: str | None = None
    """For a template message: the template the relay accepted (and bills) it as."""


class Delivered(Frame, tag="delivered"):
    """A message this account sent reached a device of its recipient. Ack ``id``."""

    id: int = 0
    message_id: str = ""
    recipient: str = ""
    recipient_device: int = 0
    server_ms: int = 0
    pricing: PricingFacts | None = None


class Read(Frame, tag="read"):
    """The recipient read a message this account sent. Ack ``id``."""

    id: int = 0
    message_id: str = ""
    recipient: str = ""
    recipient_device: int = 0
    server_ms: int = 0


class Failed(Frame, tag="failed"):
    """A message this account sent could not be delivered; ``code`` says why (131026: it
    expired before any device of its recipient received it). Ack ``id``."""

    id: int = 0
    message_id: str = ""
    recipient: str = ""
    code: int = 0
    reason: str = ""
    server_ms: int = 0


class QueueEmpty(Frame, tag="queue_empty"):
    """Everything stored for this device before now has been sent on this connection."""


class KeysLow(Frame, tag="keys_low"):
    one_time_keys: int = 0
    max_one_time_keys: int = 50


class Pong(Frame, tag="pong"):
    nonce: int = 0


ServerFrame = (
    Hello
    | Accepted
    | Resent
    | ErrorFrame
    | MessageFrame
    | Delivered
    | Read
    | Failed
    | QueueEmpty
    | KeysLow
    | Pong
)

_encoder = msgspec.msgpack.Encoder()
_client_decoder = msgspec.msgpack.Decoder(ClientFrame)
_server_decoder = msgspec.msgpack.Decoder(ServerFrame)


_pricing_decoder = msgspec.msgpack.Decoder(PricingFacts)


def encode(frame: Frame) -> bytes:
    return _encoder.encode(frame)


def encode_pricing(pricing: PricingFacts) -> bytes:
    return _encoder.encode(pricing)


def decode_pricing(raw: bytes) -> PricingFacts | None:
    """The pricing facts a ``delivered`` mailbox entry carries (none for an empty payload)."""
    return _pricing_decoder.decode(raw) if raw else None


def decode_client_frame(raw: bytes) -> ClientFrame:
    frame: ClientFrame = _client_decoder.decode(raw)
    return frame


class _SendKey(msgspec.Struct):
    """Just enough of a rejected frame to answer a send (or resend) with its
    ``client_msg_id``."""

    t: str = ""
    client_msg_id: ClientMsgId | None = None


_send_key_decoder = msgspec.msgpack.Decoder(_SendKey)


def rejected_send_id(raw: bytes) -> str | None:
    """The ``client_msg_id`` of a ``send`` or ``resend`` frame that failed to decode, if it
    has a valid one, so that its error can name the request it answers."""
    try:
        key = _send_key_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    return key.client_msg_id if key.t in _ANSWERED_BY_ID else None


_ANSWERED_BY_ID = frozenset({"send", "resend"})


def decode_server_frame(raw: bytes) -> ServerFrame:
    frame: ServerFrame = _server_decoder.decode(raw)
    return frame

"""What a ``Client`` tells its application, in the order it happened."""

from __future__ import annotations

from dataclasses import dataclass

from tresen.client.store import MessageStatus
from tresen.wire.e2e import Payload, Unsupported
from tresen.wire.relay import PricingFacts
from tresen.wire.templates import RenderedTemplate

__all__ = [
    "Connected",
    "ConsentChanged",
    "DataRequested",
    "DecryptionFailed",
    "DeliveryReceiptEvent",
    "DeviceAdded",
    "Disconnected",
    "Drained",
    "Event",
    "IdentityChanged",
    "KeyTransparencyFailed",
    "KeysReplenished",
    "MessageEvent",
    "MessageWaiting",
    "PendingSent",
    "StatusChanged",
    "TypingStarted",
]


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A message in a chat: received from the peer, or sent by another of our devices."""

    message_id: str
    chat: str
    outgoing: bool
    sender: str
    sender_device: int
    payload: Payload | Unsupported
    server_ms: int
    template: RenderedTemplate | None = None
    """For a template message: the operator-signed template filled in with the message's
    parameters, the only form in which it may be shown."""


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """An outgoing message was delivered to or read by its recipient, or could not be
    delivered (``FAILED``, with ``error_code`` and ``error``), or is being sent again to a
    device of the recipient that could not decrypt it (``WAITING``)."""

    message_id: str
    chat: str
    status: MessageStatus
    pricing: PricingFacts | None = None
    """On delivered: the relay's pricing facts of a business's message to a customer (the
    Cloud API's ``pricing`` object of a status webhook)."""
    server_ms: int = 0
    """When the relay committed the delivery, the read or the failure (relay clock)."""
    error_code: int | None = None
    """On failed: why, as a Cloud API error code (131026: it expired undelivered)."""
    error: str | None = None
    """On failed: why, in a few words."""


@dataclass(frozen=True, slots=True)
class TypingStarted:
    """The peer of ``chat`` is typing an answer to ``message_id``: show "typing…" until
    ``until_ms`` (this client's clock) or the peer's next message, whichever comes first."""

    chat: str
    message_id: str
    until_ms: int


@dataclass(frozen=True, slots=True)
class DataRequested:
    """The customer ``chat`` asks this account (a business) for a copy of what it holds
    about them; the answer names ``request_id`` (``wire.e2e.DataExport``)."""

    chat: str
    message_id: str
    request_id: str


@dataclass(frozen=True, slots=True)
class DeliveryReceiptEvent:
    """A customer's device signed that it received and accepted the template message
    ``message_id`` this account sent it (checked: the signature with the device's pinned
    Ed25519 key ``device_ed25519``, and that the message is this account's to
    ``customer``). Evidence for the bill (``tresen.crypto.delivery``); not a chat message."""

    message_id: str
    customer: str
    device_id: int
    device_ed25519: str
    template_id: str
    delivered_ms: int
    signature: bytes
    receipt_id: str
    """The relay's id of the message that carried the receipt."""


@dataclass(frozen=True, slots=True)
class KeyTransparencyFailed:
    """The relay's key log does not vouch for the keys it gave for ``account_id`` (a key
    shown to this client only, an entry removed), or (``forked``) the log is not the history
    this client saw before: sending to the peers concerned stops, as for a changed identity,
    until the user has compared safety numbers and called ``Client.trust_identity``."""

    account_id: str
    reason: str
    forked: bool = False


@dataclass(frozen=True, slots=True)
class IdentityChanged:
    """A known device of a peer now presents other identity keys.

    Sending to that peer stops until the user has compared safety numbers and called
    ``Client.trust_identity``.
    """

    account_id: str
    device_id: int
    old_ed25519: str
    new_ed25519: str


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    account_id: str
    device_id: int


@dataclass(frozen=True, slots=True)
class DecryptionFailed:
    """An envelope that could not be decrypted or decoded; it was rejected and acked."""

    message_id: str
    sender: str
    sender_device: int
    reason: str


@dataclass(frozen=True, slots=True)
class KeysReplenished:
    """New one-time keys were published; the relay now holds ``one_time_keys`` of them."""

    one_time_keys: int


@dataclass(frozen=True, slots=True)
class ConsentChanged:
    """A STOP or START keyword typed to a business changed the customer's consent.

    ``confirmation`` is the text to show the customer in that chat; when the change could not
    be recorded, ``failed`` says why and ``confirmation`` asks to try again (the text itself
    was still sent to the business).
    """

    business: str
    business_name: str
    scopes: tuple[str, ...]
    state: str
    keyword: str
    confirmation: str
    failed: str | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    pass


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class PendingSent:
    """A message that waited in the outbox (the relay could not be reached) went out: from
    now on it is known by the relay's ``message_id`` instead of its ``local_id``."""

    local_id: str
    message_id: str
    chat: str
    server_ms: int


@dataclass(frozen=True, slots=True)
class MessageWaiting:
    """A message of ``sender`` could not be decrypted on this device; its sending device
    was asked to send it again over a new session ("waiting for this message"). A
    ``MessageEvent`` with the same ``message_id`` follows once it arrives, or
    ``DecryptionFailed`` when the retries are used up."""

    message_id: str
    sender: str
    sender_device: int
    reason: str


@dataclass(frozen=True, slots=True)
class Drained:
    """Everything the relay held for this device when it connected has been processed."""


Event = (
    MessageEvent
    | StatusChanged
    | TypingStarted
    | IdentityChanged
    | KeyTransparencyFailed
    | DeviceAdded
    | DecryptionFailed
    | KeysReplenished
    | ConsentChanged
    | Connected
    | Disconnected
    | Drained
    | PendingSent
    | MessageWaiting
    | DataRequested
    | DeliveryReceiptEvent
)

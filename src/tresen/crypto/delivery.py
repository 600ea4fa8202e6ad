"""Delivery receipts: a customer's device signs that it received a business's template message.

The signed bytes are ``b"tresen-delivery-v1\\x00"`` followed by the msgpack map of
:class:`DeliveryFacts` (keys in declaration order), signed with the recipient device's Ed25519
identity key. The business keeps the facts and the signature: with the device's key (proven
by the relay's key log) anyone can check them offline, which is what makes a charge on the
operator's statement verifiable (``docs/protocol.md`` §12.5).
"""

from __future__ import annotations

import msgspec
from cryptography.exceptions import InvalidSignature

from tresen.crypto.encoding import ED25519_SIGNATURE_BYTES, ed25519_public_key, unb64
from tresen.crypto.olm import CryptoError, DeviceIdentity

__all__ = [
    "DELIVERY_PREFIX",
    "DeliveryFacts",
    "ForgedReceipt",
    "delivery_message",
    "sign_delivery",
    "verify_delivery",
]

DELIVERY_PREFIX = b"tresen-delivery-v1\x00"


class ForgedReceipt(CryptoError):
    """A delivery receipt whose signature does not verify with the device's key."""


class DeliveryFacts(msgspec.Struct, kw_only=True, frozen=True):
    """What a recipient device signs for a template message. Encoded in this field order."""

    message_id: str
    business: str
    """The sender's account id."""
    customer: str
    """The recipient's account id."""
    device_id: int
    template_id: str
    delivered_ms: int


_encoder = msgspec.msgpack.Encoder()


def delivery_message(facts: DeliveryFacts) -> bytes:
    """The exact bytes a device signs for ``facts``."""
    return DELIVERY_PREFIX + _encoder.encode(facts)


def sign_delivery(identity: DeviceIdentity, facts: DeliveryFacts) -> bytes:
    """The 64-byte Ed25519 signature of ``facts`` by the device's identity key."""
    return unb64(identity.sign(delivery_message(facts)), ED25519_SIGNATURE_BYTES)


def verify_delivery(facts: DeliveryFacts, signature: bytes, ed25519: str) -> None:
    """Check that ``signature`` is the device key ``ed25519``'s (unpadded base64) over
    ``facts``; :class:`ForgedReceipt` if not."""
    try:
        public = ed25519_public_key(ed25519)
    except ValueError:
        raise ForgedReceipt(f"not an Ed25519 key in unpadded base64: {ed25519!r}") from None
    try:
        public.verify(signature, delivery_message(facts))
    except (InvalidSignature, ValueError):
        raise ForgedReceipt("the receipt is not signed by this device's key") from None

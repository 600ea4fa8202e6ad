"""Consent statements: a customer's device signs that it agrees, or no longer agrees, to hear
from a business in one scope.

A statement is the msgpack map of :class:`ConsentStatement` (fields in declaration order),
signed with the device's Ed25519 identity key as ``b"tresen-consent-v1\\x00" + body``. Anyone
holding the statement, its signature and the device's Ed25519 key can check it offline: the
relay when it stores it, the business, an auditor. The statement names the key that signed
it, so it stays verifiable after the device replaces its keys; a verifier still decides
whether it trusts that key for that customer (the relay: the device's current key at
submission; a client: the key it pinned).

Scopes: ``utility`` covers utility and authentication templates, ``marketing`` marketing
templates. A revocation is a statement with state ``opted_out``.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature

from tresen.crypto.encoding import ED25519_SIGNATURE_BYTES, ed25519_public_key, unb64
from tresen.crypto.olm import CryptoError, DeviceIdentity

__all__ = [
    "ALL_SCOPES",
    "CONSENT_PREFIX",
    "CONSENT_VERSION",
    "ConsentScope",
    "ConsentState",
    "ConsentStatement",
    "ForgedConsent",
    "SignedConsent",
    "consent_message",
    "decode_statement",
    "new_statement",
    "sign_statement",
    "verify_statement",
]

CONSENT_VERSION = 1
CONSENT_PREFIX = b"tresen-consent-v1\x00"
NONCE_BYTES = 16


class ConsentScope(StrEnum):
    UTILITY = "utility"
    """Utility and authentication templates."""
    MARKETING = "marketing"


class ConsentState(StrEnum):
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


ALL_SCOPES: tuple[ConsentScope, ...] = (ConsentScope.UTILITY, ConsentScope.MARKETING)


class ForgedConsent(CryptoError):
    """A statement whose signature does not verify, or whose bytes are not a statement."""


class ConsentStatement(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What a customer's device signs. Encoded as a msgpack map in this field order."""

    v: int = CONSENT_VERSION
    business_account: str
    customer_account: str
    customer_phone: str
    """E.164, as the relay has it for the customer's account."""
    scope: ConsentScope
    state: ConsentState
    at_ms: int
    """When the customer decided, by the device's clock (Unix milliseconds)."""
    device_id: int
    device_ed25519: str
    """The signing device's Ed25519 identity key, unpadded base64."""
    nonce: bytes
    """16 random bytes: no two statements are alike, even with equal fields."""


@dataclass(frozen=True, slots=True)
class SignedConsent:
    """A statement's exact bytes and the device's signature over the prefixed bytes."""

    body: bytes
    signature: str

    def to_json(self) -> dict[str, str]:
        """``{"statement": standard base64 (padded), "signature": unpadded base64}``."""
        return {
            "statement": base64.b64encode(self.body).decode("ascii"),
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Any) -> SignedConsent:
        if not isinstance(data, dict):
            raise ForgedConsent("a signed consent is an object with statement and signature")
        body, signature = data.get("statement"), data.get("signature")
        if not isinstance(body, str) or not isinstance(signature, str):
            raise ForgedConsent("a signed consent needs statement and signature as strings")
        try:
            return cls(unb64(body), signature)
        except ValueError:
            raise ForgedConsent("the statement is not base64") from None


def consent_message(body: bytes) -> bytes:
    """The bytes a device signs for a statement ``body``."""
    return CONSENT_PREFIX + body


def new_statement(
    *,
    business_account: str,
    customer_account: str,
    customer_phone: str,
    scope: ConsentScope,
    state: ConsentState,
    at_ms: int,
    device_id: int,
    device_ed25519: str,
) -> ConsentStatement:
    return ConsentStatement(
        business_account=business_account,
        customer_account=customer_account,
        customer_phone=customer_phone,
        scope=scope,
        state=state,
        at_ms=at_ms,
        device_id=device_id,
        device_ed25519=device_ed25519,
        nonce=secrets.token_bytes(NONCE_BYTES),
    )


def sign_statement(identity: DeviceIdentity, statement: ConsentStatement) -> SignedConsent:
    """Sign ``statement`` with the device's identity key, which it must name."""
    if statement.device_ed25519 != identity.ed25519:
        raise ValueError("the statement names another Ed25519 key than this device's")
    body = msgspec.msgpack.encode(statement)
    return SignedConsent(body, identity.sign(consent_message(body)))


def decode_statement(body: bytes) -> ConsentStatement:
    """The statement in ``body``, decoded strictly; no signature check (see
    :func:`verify_statement`). Only the canonical encoding is accepted, so a statement has
    one spelling in bytes."""
    try:
        statement = msgspec.msgpack.decode(body, type=ConsentStatement)
    except msgspec.DecodeError as exc:
        raise ForgedConsent(f"not a consent statement: {exc}") from None
    if statement.v != CONSENT_VERSION:
        raise ForgedConsent(f"unsupported consent statement version {statement.v}")
    if len(statement.nonce) != NONCE_BYTES:
        raise ForgedConsent(f"the nonce must be {NONCE_BYTES} bytes")
    if msgspec.msgpack.encode(statement) != body:
        raise ForgedConsent("not the canonical encoding of a consent statement")
    return statement


def verify_statement(signed: SignedConsent, ed25519: str) -> ConsentStatement:
    """Check ``signed`` with the device key ``ed25519`` (unpadded base64) and return the
    statement. The signature is checked before the body is decoded; the statement must
    name the same key."""
    try:
        public = ed25519_public_key(ed25519)
    except ValueError:
        raise ForgedConsent(f"not an Ed25519 key in unpadded base64: {ed25519!r}") from None
    try:
        public.verify(
            unb64(signed.signature, ED25519_SIGNATURE_BYTES), consent_message(signed.body)
        )
    except (InvalidSignature, ValueError):
        raise ForgedConsent("the consent statement is not signed by this key") from None
    statement = decode_statement(signed.body)
    if statement.device_ed25519 != ed25519:
        raise ForgedConsent("the consent statement names another signing key")
    return statement

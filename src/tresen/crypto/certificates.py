"""Verified-business certificates, operator signing keys and revocation lists.

The operator (who runs the relay) signs with an Ed25519 key a certificate that binds a
business account to its phone number, display name and the Ed25519 identity keys of its
devices. Clients pin the operator's public key and check certificates offline: this module
is used by the relay (to sign) and by clients (to verify), and does no I/O.

Byte formats (``\\x00`` is one zero byte; all texts UTF-8; numbers as decimal ASCII):

- key id: the first 16 hex digits of SHA-256 over the raw 32-byte public key; the
  fingerprint shown to people is the whole SHA-256 in hex, in groups of four.
- public keys and signatures: unpadded standard base64, as vodozemac writes them.
- certificate body: the msgpack map of :class:`BusinessCertificate`, fields in declaration
  order; signed as ``b"tresen-cert-v1\\x00" + body``.
- revocation list body: the msgpack map of :class:`RevocationList`; signed as
  ``b"tresen-revocations-v1\\x00" + body``.
- key endorsement (rotation): the previous key signs
  ``b"tresen-operator-key-v1\\x00" + key_id + b"\\x00" + public_key + b"\\x00" +
  str(signs_from_ms)``, where ``public_key`` is the base64 *text* of the new key (as in the
  relay's one-time-key signatures).

Validity rules a client applies (:func:`verify_certificate`):

- the certificate's ``key_id`` must name a key in the client's :class:`KeyRing`, which starts
  from one pinned key and only grows by keys endorsed by a key already in it;
- the signature must verify over the exact body bytes, and the body must decode strictly;
- ``now < expires_ms``, and ``now < retires_ms`` of the signing key: a key that was rotated
  away keeps validating its certificates for the overlap period only, after which they count
  as expired (the relay has re-issued them with the new key by then);
- its serial is not in the (verified, fresh) revocation list.

A valid certificate shows a tick only if it still binds what the client sees now
(:func:`check_binding`): a renamed business, or one with other device keys, gets no tick until
the operator issues a new certificate.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from tresen.crypto.encoding import (
    ED25519_KEY_BYTES,
    ED25519_SIGNATURE_BYTES,
    b64,
    ed25519_public_key,
    unb64,
)
from tresen.crypto.olm import CryptoError

__all__ = [
    "CERTIFICATE_PREFIX",
    "CERTIFICATE_VERSION",
    "ENDORSEMENT_PREFIX",
    "REVOCATIONS_PREFIX",
    "BusinessCertificate",
    "CertificateError",
    "ExpiredCertificate",
    "ForgedCertificate",
    "KeyRing",
    "OperatorKey",
    "PublishedKey",
    "RevocationList",
    "RevokedCertificate",
    "RingUpdate",
    "SignedCertificate",
    "SignedRevocationList",
    "StaleRevocationList",
    "UnknownOperatorKey",
    "check_binding",
    "decode_certificate",
    "endorsement_message",
    "key_fingerprint",
    "key_id_of",
    "verify_certificate",
    "verify_revocations",
]

CERTIFICATE_VERSION = 1
CERTIFICATE_PREFIX = b"tresen-cert-v1\x00"
REVOCATIONS_PREFIX = b"tresen-revocations-v1\x00"
ENDORSEMENT_PREFIX = b"tresen-operator-key-v1\x00"


# --- errors ----------------------------------------------------------------------------------


class CertificateError(CryptoError):
    """A certificate or revocation list that must not be trusted."""


class UnknownOperatorKey(CertificateError):
    """Signed by a key that is not in the client's key ring (not pinned, not endorsed)."""


class ForgedCertificate(CertificateError):
    """The signature does not verify, or the signed bytes are not a certificate."""


class ExpiredCertificate(CertificateError):
    """Past its expiry, or its signing key has retired."""


class RevokedCertificate(CertificateError):
    """The operator revoked it: its serial is on the revocation list."""


class StaleRevocationList(CertificateError):
    """A revocation list too old to rely on, or signed by a retired key."""


# --- encodings -------------------------------------------------------------------------------


def key_id_of(public_key: str) -> str:
    """The key id of an operator public key (unpadded base64): 16 hex digits of SHA-256."""
    return hashlib.sha256(unb64(public_key, ED25519_KEY_BYTES)).hexdigest()[:16]


def key_fingerprint(public_key: str) -> str:
    """The whole SHA-256 of the raw public key in hex, in groups of four, for people."""
    digest = hashlib.sha256(unb64(public_key, ED25519_KEY_BYTES)).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def endorsement_message(key_id: str, public_key: str, signs_from_ms: int) -> bytes:
    """What the previous operator key signs to hand over to a new one."""
    return (
        ENDORSEMENT_PREFIX
        + key_id.encode()
        + b"\x00"
        + public_key.encode()
        + b"\x00"
        + str(signs_from_ms).encode()
    )


def _verify(public: Ed25519PublicKey, signature: str, message: bytes) -> bool:
    try:
        public.verify(unb64(signature, ED25519_SIGNATURE_BYTES), message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- signed structures -----------------------------------------------------------------------


class BusinessCertificate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What the operator vouches for. Encoded as a msgpack map in this field order."""

    v: int = CERTIFICATE_VERSION
    serial: int
    account_id: str
    phone: str
    display_name: str
    device_keys: list[str]
    """Ed25519 identity keys of the business's devices, sorted, unpadded base64."""
    issued_ms: int
    expires_ms: int
    key_id: str


class RevocationList(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Serials of revoked certificates that have not expired yet, as of ``issued_ms``."""

    v: int = CERTIFICATE_VERSION
    issued_ms: int
    serials: list[int]
    key_id: str


class _KeyIdOnly(msgspec.Struct):
    # Read before the signature is checked, only to choose the key to check it with.
    key_id: str


def _signed_json(body: bytes, signature: str) -> dict[str, str]:
    return {"body": base64.b64encode(body).decode("ascii"), "signature": signature}


def _parse_signed_json(data: Any, what: str) -> tuple[bytes, str]:
    if not isinstance(data, dict):
        raise ForgedCertificate(f"{what} must be an object with body and signature")
    body, signature = data.get("body"), data.get("signature")
    if not isinstance(body, str) or not isinstance(signature, str):
        raise ForgedCertificate(f"{what} needs body and signature as strings")
    try:
        return unb64(body), signature
    except ValueError:
        raise ForgedCertificate(f"{what} body is not base64") from None


@dataclass(frozen=True, slots=True)
class SignedCertificate:
    """The certificate's exact bytes and the operator's signature over them."""

    body: bytes
    signature: str

    def to_json(self) -> dict[str, str]:
        """``{"body": standard base64 (padded), "signature": unpadded base64}``."""
        return _signed_json(self.body, self.signature)

    @classmethod
    def from_json(cls, data: Any) -> SignedCertificate:
        return cls(*_parse_signed_json(data, "certificate"))


@dataclass(frozen=True, slots=True)
class SignedRevocationList:
    body: bytes
    signature: str

    def to_json(self) -> dict[str, str]:
        return _signed_json(self.body, self.signature)

    @classmethod
    def from_json(cls, data: Any) -> SignedRevocationList:
        return cls(*_parse_signed_json(data, "revocation list"))


def decode_certificate(body: bytes) -> BusinessCertificate:
    """The certificate in ``body``, decoded strictly (no signature check: see
    :func:`verify_certificate`)."""
    try:
        cert = msgspec.msgpack.decode(body, type=BusinessCertificate)
    except msgspec.DecodeError as exc:
        raise ForgedCertificate(f"not a certificate: {exc}") from None
    if cert.v != CERTIFICATE_VERSION:
        raise ForgedCertificate(f"unsupported certificate version {cert.v}")
    return cert


# --- the operator's key ----------------------------------------------------------------------


class OperatorKey:
    """An operator signing key (private). Lives on the relay only, sealed at rest."""

    __slots__ = ("_private", "key_id", "public_key")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key = b64(private.public_key().public_bytes_raw())
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def generate(cls) -> OperatorKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> OperatorKey:
        if len(raw) != ED25519_KEY_BYTES:
            raise CertificateError(f"an operator private key is {ED25519_KEY_BYTES} bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key: seal it before it goes anywhere."""
        return self._private.private_bytes_raw()

    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def sign(self, message: bytes) -> str:
        return b64(self._private.sign(message))

    def endorse(self, public_key: str, signs_from_ms: int) -> str:
        """This key's signature handing over to ``public_key`` from ``signs_from_ms``."""
        return self.sign(endorsement_message(key_id_of(public_key), public_key, signs_from_ms))

    def sign_certificate(self, cert: BusinessCertificate) -> SignedCertificate:
        if cert.key_id != self.key_id:
            raise ValueError(f"certificate names key {cert.key_id}, not {self.key_id}")
        body = msgspec.msgpack.encode(cert)
        return SignedCertificate(body, self.sign(CERTIFICATE_PREFIX + body))

    def sign_revocations(self, issued_ms: int, serials: Iterable[int]) -> SignedRevocationList:
        listing = RevocationList(
            issued_ms=issued_ms, serials=sorted(set(serials)), key_id=self.key_id
        )
        body = msgspec.msgpack.encode(listing)
        return SignedRevocationList(body, self.sign(REVOCATIONS_PREFIX + body))

    def __repr__(self) -> str:
        return f"OperatorKey({self.key_id})"


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """An operator public key as the relay publishes it (``GET /v1/operator/keys``).

    ``endorsement`` is the previous key's signature (none for the first key);
    ``retires_ms`` is set once a newer key took over: certificates signed by this key are
    valid until then.
    """

    key_id: str
    public_key: str
    endorsement: str | None
    signs_from_ms: int
    retires_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "public_key": self.public_key,
            "endorsement": self.endorsement,
            "signs_from_ms": self.signs_from_ms,
            "retires_ms": self.retires_ms,
        }

    @classmethod
    def from_json(cls, data: Any) -> PublishedKey:
        try:
            retires = data.get("retires_ms")
            endorsement = data.get("endorsement")
            key = cls(
                key_id=str(data["key_id"]),
                public_key=str(data["public_key"]),
                endorsement=None if endorsement is None else str(endorsement),
                signs_from_ms=int(data["signs_from_ms"]),
                retires_ms=None if retires is None else int(retires),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            raise CertificateError("malformed published operator key") from None
        return key


# --- the client's key ring -------------------------------------------------------------------


@dataclass(slots=True)
class _TrustedKey:
    key_id: str
    public_key: str
    verifier: Ed25519PublicKey
    signs_from_ms: int
    retires_ms: int | None


@dataclass(frozen=True, slots=True)
class RingUpdate:
    """What :meth:`KeyRing.update` did: keys added (endorsed), retirements learned, and keys
    ignored because no trusted key endorsed them (or they contradict a trusted key)."""

    added: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


class KeyRing:
    """The operator keys a client trusts: one pinned key and the keys it endorsed, in turn.

    Pin the key learned at registration (after showing its fingerprint) or set in the
    configuration. :meth:`update` follows the operator's rotations: a published key joins the
    ring only if a key already in the ring endorsed it. A retirement time, once learned, can
    only move earlier, so a relay cannot extend the life of a rotated-away key later.
    """

    def __init__(self, pinned_public_key: str) -> None:
        try:
            verifier = ed25519_public_key(pinned_public_key)
        except ValueError:
            raise CertificateError(
                "the pinned operator key is not an Ed25519 key in unpadded base64"
            ) from None
        key_id = key_id_of(pinned_public_key)
        self._keys: dict[str, _TrustedKey] = {
            key_id: _TrustedKey(key_id, pinned_public_key, verifier, 0, None)
        }
        self.pinned_key_id = key_id

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys, key=lambda k: (self._keys[k].signs_from_ms, k))

    def public_key(self, key_id: str) -> str:
        return self._keys[key_id].public_key

    def retires_ms(self, key_id: str) -> int | None:
        return self._keys[key_id].retires_ms

    def fingerprint(self, key_id: str | None = None) -> str:
        return key_fingerprint(self._keys[key_id or self.pinned_key_id].public_key)

    def update(self, published: Iterable[PublishedKey]) -> RingUpdate:
        """Take in the relay's published keys; returns what was added, retired and ignored."""
        result = RingUpdate()
        pending = list(published)
        progress = True
        while progress:
            progress = False
            for key in list(pending):
                known = self._keys.get(key.key_id)
                if known is not None:
                    pending.remove(key)
                    if known.public_key != key.public_key:
                        result.ignored.append(key.key_id)
                    elif self._learn_retirement(known, key.retires_ms):
                        result.retired.append(key.key_id)
                    continue
                trusted = self._endorsed(key)
                if trusted is not None:
                    self._keys[key.key_id] = trusted
                    pending.remove(key)
                    result.added.append(key.key_id)
                    progress = True  # it may endorse others in the list
        result.ignored.extend(k.key_id for k in pending)
        return result

    @staticmethod
    def _learn_retirement(key: _TrustedKey, retires_ms: int | None) -> bool:
        if retires_ms is None or (key.retires_ms is not None and key.retires_ms <= retires_ms):
            return False
        key.retires_ms = retires_ms
        return True

    def _endorsed(self, key: PublishedKey) -> _TrustedKey | None:
        if key.endorsement is None:
            return None
        try:
            verifier = ed25519_public_key(key.public_key)
            if key_id_of(key.public_key) != key.key_id:
                return None
        except ValueError:
            return None
        message = endorsement_message(key.key_id, key.public_key, key.signs_from_ms)
        for endorser in self._keys.values():
            # A key hands over while it still signs, never after its own retirement.
            if endorser.retires_ms is not None and key.signs_from_ms > endorser.retires_ms:
                continue
            if _verify(endorser.verifier, key.endorsement, message):
                return _TrustedKey(
                    key.key_id, key.public_key, verifier, key.signs_from_ms, key.retires_ms
                )
        return None

    def _verifier(self, key_id: str, what: str) -> _TrustedKey:
        key = self._keys.get(key_id)
        if key is None:
            raise UnknownOperatorKey(
                f"{what} is signed by operator key {key_id}, which this client does not trust"
            )
        return key

    def to_json(self) -> dict[str, Any]:
        """The ring for the client's store; :meth:`from_json` restores it."""
        return {
            "pinned": self._keys[self.pinned_key_id].public_key,
            "keys": [
                {
                    "public_key": k.public_key,
                    "signs_from_ms": k.signs_from_ms,
                    "retires_ms": k.retires_ms,
                }
                for k in self._keys.values()
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> KeyRing:
        # The store is the client's own (sealed) state, so its keys are trusted as saved.
        try:
            ring = cls(str(data["pinned"]))
            for entry in data["keys"]:
                public_key = str(entry["public_key"])
                key_id = key_id_of(public_key)
                retires = entry.get("retires_ms")
                ring._keys[key_id] = _TrustedKey(
                    key_id,
                    public_key,
                    ed25519_public_key(public_key),
                    int(entry["signs_from_ms"]),
                    None if retires is None else int(retires),
                )
        except (KeyError, TypeError, ValueError):
            raise CertificateError("malformed key ring") from None
        return ring


# --- verification ----------------------------------------------------------------------------


def _signed_by(ring: KeyRing, body: bytes, signature: str, prefix: bytes, what: str) -> _TrustedKey:
    try:
        key_id = msgspec.msgpack.decode(body, type=_KeyIdOnly).key_id
    except msgspec.DecodeError:
        raise ForgedCertificate(f"{what} is not readable") from None
    key = ring._verifier(key_id, what)
    if not _verify(key.verifier, signature, prefix + body):
        raise ForgedCertificate(f"the signature of the {what} does not verify")
    return key


def verify_certificate(
    signed: SignedCertificate,
    ring: KeyRing,
    now_ms: int,
    revoked: Collection[int] = (),
) -> BusinessCertificate:
    """The certificate, if the operator signed it and it is valid at ``now_ms``.

    ``revoked`` are the serials of a revocation list checked with :func:`verify_revocations`.
    Raises :class:`UnknownOperatorKey`, :class:`ForgedCertificate`,
    :class:`ExpiredCertificate` or :class:`RevokedCertificate`.
    """
    key = _signed_by(ring, signed.body, signed.signature, CERTIFICATE_PREFIX, "certificate")
    cert = decode_certificate(signed.body)
    if now_ms >= cert.expires_ms:
        raise ExpiredCertificate(f"certificate {cert.serial} expired")
    if key.retires_ms is not None and now_ms >= key.retires_ms:
        raise ExpiredCertificate(
            f"certificate {cert.serial} is signed by operator key {key.key_id}, which retired"
        )
    if cert.serial in revoked:
        raise RevokedCertificate(f"certificate {cert.serial} was revoked")
    return cert


def verify_revocations(
    signed: SignedRevocationList, ring: KeyRing, now_ms: int, max_age_ms: int
) -> RevocationList:
    """The revocation list, if the operator signed it with a current key within
    ``max_age_ms``. A stale list (:class:`StaleRevocationList`) is an error to report: the
    client cannot tell whether a certificate was revoked since."""
    key = _signed_by(ring, signed.body, signed.signature, REVOCATIONS_PREFIX, "revocation list")
    try:
        listing = msgspec.msgpack.decode(signed.body, type=RevocationList)
    except msgspec.DecodeError as exc:
        raise ForgedCertificate(f"not a revocation list: {exc}") from None
    if listing.v != CERTIFICATE_VERSION:
        raise ForgedCertificate(f"unsupported revocation list version {listing.v}")
    if key.retires_ms is not None and now_ms >= key.retires_ms:
        # A retired (perhaps leaked) key must not be able to vouch that nothing is revoked.
        raise StaleRevocationList(f"revocation list signed by retired key {key.key_id}")
    if now_ms - listing.issued_ms > max_age_ms:
        raise StaleRevocationList(
            f"revocation list is {(now_ms - listing.issued_ms) // 1000} s old "
            f"(at most {max_age_ms // 1000} s allowed)"
        )
    return listing


def check_binding(
    cert: BusinessCertificate,
    *,
    account_id: str,
    phone: str,
    display_name: str,
    device_keys: Iterable[str],
) -> bool:
    """Whether a valid certificate vouches for the business as the client sees it now.

    A changed display name, phone number or device key means no tick: the operator has to
    certify the new state.
    """
    return (
        cert.account_id == account_id
        and cert.phone == phone
        and cert.display_name == display_name
        and cert.device_keys == sorted(set(device_keys))
    )

"""Olm device identities and 1:1 sessions: a thin typed wrapper over vodozemac.

vodozemac does all the cryptography; this module only gives it typed edges, turns its
``ValueError`` subclasses into :class:`CryptoError` subclasses, and signs one-time and fallback
keys in the relay's formats (``tresen.relay.keys.service``, ``docs/protocol.md`` §4).

Keys travel as unpadded standard base64, exactly as vodozemac's ``to_base64()`` writes them;
a key spelled any other way is refused (:class:`KeyFormatError`), so a key has one spelling
everywhere, as on the relay.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import vodozemac

from tresen.wire.keys import fallback_key_message, one_time_key_message

__all__ = [
    "PICKLE_KEY_BYTES",
    "Ciphertext",
    "CryptoError",
    "DecryptionError",
    "DeviceIdentity",
    "KeyFormatError",
    "MessageType",
    "OlmSession",
    "PickleError",
    "SignatureError",
    "SignedKey",
    "verify_signed_key",
]

PICKLE_KEY_BYTES = 32

_K = TypeVar("_K", vodozemac.Curve25519PublicKey, vodozemac.Ed25519PublicKey)


# --- errors ----------------------------------------------------------------------------------


class CryptoError(Exception):
    """Base of every error of ``tresen.crypto``; vodozemac's own exceptions never escape."""


class DecryptionError(CryptoError):
    """A ciphertext that cannot be decrypted: corrupted, replayed, or for another session."""


class SignatureError(CryptoError):
    """A signature that does not verify with the claimed Ed25519 identity key."""


class PickleError(CryptoError):
    """A pickle that cannot be restored: wrong key, or corrupted text."""


class KeyFormatError(CryptoError):
    """A public key that is not canonical unpadded base64 of a key of the expected kind."""


# --- value types -----------------------------------------------------------------------------


class MessageType:
    """Olm message types as they travel in ``DeviceCiphertext.type``."""

    PRE_KEY = 0
    NORMAL = 1


@dataclass(frozen=True, slots=True)
class Ciphertext:
    """One Olm message: exactly vodozemac's ``AnyOlmMessage.to_parts()``.

    ``type`` 0 is a pre-key message (sent until the peer has replied), 1 a normal one.
    """

    type: int
    body: bytes


@dataclass(frozen=True, slots=True)
class SignedKey:
    """A Curve25519 one-time or fallback key and its Ed25519 signature (unpadded base64)."""

    key_id: str
    public_key: str
    signature: str


def verify_signed_key(ed25519: str, key: SignedKey, *, fallback: bool) -> None:
    """Check ``key``'s signature with its owner's Ed25519 identity key.

    A client must do this for every claimed key before building a session on it: the relay
    checks signatures on upload, but a client does not trust the relay.
    """
    signer = _ed25519(ed25519)
    _curve25519(key.public_key)
    message = (fallback_key_message if fallback else one_time_key_message)(
        key.key_id, key.public_key
    )
    try:
        signature = vodozemac.Ed25519Signature.from_base64(key.signature)
        signer.verify_signature(message, signature)
    except ValueError:
        kind = "fallback" if fallback else "one-time"
        raise SignatureError(
            f"the {kind} key {key.key_id!r} is not signed by the Ed25519 identity key {ed25519}"
        ) from None


# --- device identity -------------------------------------------------------------------------


class DeviceIdentity:
    """A device's long-term Olm account: identity keys, one-time keys and a fallback key."""

    def __init__(self, account: vodozemac.Account) -> None:
        self._account = account

    @classmethod
    def create(cls) -> DeviceIdentity:
        return cls(vodozemac.Account())

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> DeviceIdentity:
        _check_pickle_key(key)
        try:
            return cls(vodozemac.Account.from_pickle(pickle, key))
        except ValueError as exc:
            raise PickleError(f"cannot restore the device identity: {exc}") from None

    def pickle(self, key: bytes) -> str:
        """The account state, encrypted with ``key`` (32 bytes) by vodozemac."""
        _check_pickle_key(key)
        return self._account.pickle(key)

    @property
    def curve25519(self) -> str:
        return self._account.curve25519_key.to_base64()

    @property
    def ed25519(self) -> str:
        return self._account.ed25519_key.to_base64()

    @property
    def max_one_time_keys(self) -> int:
        return self._account.max_number_of_one_time_keys

    def sign(self, message: bytes) -> str:
        """An Ed25519 signature of ``message`` with the identity key (unpadded base64)."""
        return self._account.sign(message).to_base64()

    def generate_one_time_keys(self, count: int) -> list[SignedKey]:
        """Generate up to ``count`` one-time keys; return all unpublished ones, signed.

        Never more than ``max_one_time_keys`` (50) are unpublished at once, the most the relay
        holds per device: ask for ``max_one_time_keys`` minus the relay's count. Keys generated
        earlier but not yet published are returned again, so a failed upload can simply be
        retried; call :meth:`mark_published` once the relay has stored them.
        """
        if count < 0:
            raise ValueError("count must not be negative")
        room = self.max_one_time_keys - len(self._account.one_time_keys)
        if min(count, room) > 0:
            self._account.generate_one_time_keys(min(count, room))
        unpublished = sorted(self._account.one_time_keys.items(), key=lambda kv: _key_order(kv[0]))
        return [
            self._signed(key_id, key.to_base64(), one_time_key_message)
            for key_id, key in unpublished
        ]

    def generate_fallback_key(self) -> SignedKey:
        """Generate a new fallback key and return it signed (publish it, then mark_published).

        vodozemac keeps the previous fallback key too, so sessions a peer started on it while
        the new one was being uploaded still open.
        """
        # Both present at runtime but missing from vodozemac 0.10's stubs.
        account: Any = self._account
        account.generate_fallback_key()
        unpublished: dict[str, vodozemac.Curve25519PublicKey] = account.fallback_key
        [(key_id, key)] = unpublished.items()
        return self._signed(key_id, key.to_base64(), fallback_key_message)

    def mark_published(self) -> None:
        """The relay holds the keys generated so far; stop returning them as unpublished."""
        self._account.mark_keys_as_published()

    def _signed(
        self, key_id: str, public_key: str, message: Callable[[str, str], bytes]
    ) -> SignedKey:
        return SignedKey(key_id, public_key, self.sign(message(key_id, public_key)))

    def create_outbound_session(self, peer_curve25519: str, one_time_key: str) -> OlmSession:
        """Start a session with a peer device from its identity key and a claimed key.

        Verify the claimed key with :func:`verify_signed_key` first.
        """
        identity = _curve25519(peer_curve25519)
        otk = _curve25519(one_time_key)
        try:
            return OlmSession(self._account.create_outbound_session(identity, otk))
        except ValueError as exc:
            # vodozemac refuses keys whose Diffie-Hellman output would be predictable
            # (low-order points), since 0.10.
            raise CryptoError(f"cannot create a session with this key: {exc}") from None

    def create_inbound_session(
        self, peer_curve25519: str, message: Ciphertext
    ) -> tuple[OlmSession, bytes]:
        """Open the session a peer started with a pre-key message; return it and the plaintext.

        Consumes the one-time key the message was built on, so a replayed pre-key message
        fails here with :class:`DecryptionError` (unless it was built on the fallback key and
        its session already exists: check :meth:`OlmSession.matches` on known sessions first).
        """
        identity = _curve25519(peer_curve25519)
        if message.type != MessageType.PRE_KEY:
            raise DecryptionError("only a pre-key message (type 0) can open a session")
        pre_key = _olm_message(message).to_pre_key()
        if pre_key is None:  # pragma: no cover - from_parts(0, ...) always is a pre-key message
            raise DecryptionError("not a pre-key message")
        try:
            session, plaintext = self._account.create_inbound_session(identity, pre_key)
        except ValueError as exc:
            raise DecryptionError(f"cannot open a session from this message: {exc}") from None
        return OlmSession(session), plaintext


# --- sessions --------------------------------------------------------------------------------


class OlmSession:
    """A 1:1 Olm session with one peer device (double ratchet)."""

    def __init__(self, session: vodozemac.Session) -> None:
        self._session = session

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> OlmSession:
        _check_pickle_key(key)
        try:
            return cls(vodozemac.Session.from_pickle(pickle, key))
        except ValueError as exc:
            raise PickleError(f"cannot restore the session: {exc}") from None

    def pickle(self, key: bytes) -> str:
        _check_pickle_key(key)
        return self._session.pickle(key)

    @property
    def session_id(self) -> str:
        return self._session.session_id

    def encrypt(self, plaintext: bytes) -> Ciphertext:
        try:
            message = self._session.encrypt(plaintext)
        except ValueError as exc:
            raise CryptoError(f"cannot encrypt with this session: {exc}") from None
        message_type, body = message.to_parts()
        return Ciphertext(message_type, body)

    def decrypt(self, message: Ciphertext) -> bytes:
        olm_message = _olm_message(message)
        try:
            return self._session.decrypt(olm_message)
        except ValueError as exc:
            raise DecryptionError(f"cannot decrypt with this session: {exc}") from None

    def matches(self, message: Ciphertext) -> bool:
        """Whether a pre-key message belongs to this session (normal messages: False)."""
        if message.type != MessageType.PRE_KEY:
            return False
        try:
            pre_key = vodozemac.AnyOlmMessage.from_parts(message.type, message.body).to_pre_key()
        except ValueError:
            return False
        return pre_key is not None and self._session.session_matches(pre_key)


# --- helpers ---------------------------------------------------------------------------------


def _curve25519(value: str) -> vodozemac.Curve25519PublicKey:
    return _public_key(vodozemac.Curve25519PublicKey, value, "Curve25519")


def _ed25519(value: str) -> vodozemac.Ed25519PublicKey:
    return _public_key(vodozemac.Ed25519PublicKey, value, "Ed25519")


def _public_key(kind: type[_K], value: str, name: str) -> _K:
    try:
        key = kind.from_base64(value)
    except (ValueError, TypeError):
        raise KeyFormatError(f"not a {name} public key in unpadded base64: {value!r}") from None
    if key.to_base64() != value:
        raise KeyFormatError(f"not the canonical unpadded base64 of a {name} key: {value!r}")
    return key


def _olm_message(message: Ciphertext) -> vodozemac.AnyOlmMessage:
    try:
        return vodozemac.AnyOlmMessage.from_parts(message.type, message.body)
    except (ValueError, OverflowError) as exc:
        raise DecryptionError(f"not an Olm message: {exc}") from None


def _check_pickle_key(key: bytes) -> None:
    if len(key) != PICKLE_KEY_BYTES:
        raise PickleError(f"a pickle key has {PICKLE_KEY_BYTES} bytes, not {len(key)}")


def _key_order(key_id: str) -> tuple[int, str]:
    """vodozemac's key ids are unpadded base64 of a big-endian counter: oldest first."""
    try:
        return int.from_bytes(base64.b64decode(key_id + "=" * (-len(key_id) % 4))), key_id
    except ValueError:  # pragma: no cover - vodozemac writes only base64 key ids
        return 0, key_id

"""Client-side cryptography: Olm identities and sessions (vodozemac), secrets at rest, and
safety numbers. Every error is a :class:`CryptoError`; vodozemac's exceptions never escape."""

from __future__ import annotations

from tresen.crypto.olm import (
    Ciphertext,
    CryptoError,
    DecryptionError,
    DeviceIdentity,
    KeyFormatError,
    MessageType,
    OlmSession,
    PickleError,
    SignatureError,
    SignedKey,
    verify_signed_key,
)
from tresen.crypto.safety import Party, fingerprint, safety_number
from tresen.crypto.secrets import (
    SecretsError,
    key_from_env,
    load_or_create_key_file,
    seal,
    unseal,
)

__all__ = [
    "Ciphertext",
    "CryptoError",
    "DecryptionError",
    "DeviceIdentity",
    "KeyFormatError",
    "MessageType",
    "OlmSession",
    "Party",
    "PickleError",
    "SecretsError",
    "SignatureError",
    "SignedKey",
    "fingerprint",
    "key_from_env",
    "load_or_create_key_file",
    "safety_number",
    "seal",
    "unseal",
    "verify_signed_key",
]

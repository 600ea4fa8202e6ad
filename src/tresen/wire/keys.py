"""What a device signs when it publishes keys; shared by the relay and the clients.

The relay verifies, and a client that claims a key verifies again, that each one-time and
fallback key was signed by the owning device's Ed25519 identity key over these bytes. The
prefixes differ, so a signature over a one-time key never passes for a fallback key.
"""

from __future__ import annotations

__all__ = [
    "FALLBACK_KEY_PREFIX",
    "ONE_TIME_KEY_PREFIX",
    "fallback_key_message",
    "one_time_key_message",
]

ONE_TIME_KEY_PREFIX = b"tresen-otk-v1\x00"
FALLBACK_KEY_PREFIX = b"tresen-fallback-v1\x00"


def one_time_key_message(key_id: str, public_key: str) -> bytes:
    """The bytes a device signs with its Ed25519 identity key to publish a one-time key."""
    return ONE_TIME_KEY_PREFIX + key_id.encode() + b"\x00" + public_key.encode()


def fallback_key_message(key_id: str, public_key: str) -> bytes:
    """The bytes a device signs with its Ed25519 identity key to publish its fallback key."""
    return FALLBACK_KEY_PREFIX + key_id.encode() + b"\x00" + public_key.encode()

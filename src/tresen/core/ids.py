"""Identifiers that must not be mixed up, and how new ones are made."""

from __future__ import annotations

import secrets
from typing import NewType

__all__ = [
    "AccountId",
    "DeviceId",
    "DevicePk",
    "MessageId",
    "new_account_id",
    "new_message_id",
    "new_registration_id",
    "new_token",
]

AccountId = NewType("AccountId", str)
"""Public, stable id of an account (32 hex characters)."""

DeviceId = NewType("DeviceId", int)
"""Number of a device within its account (1, 2, ...)."""

DevicePk = NewType("DevicePk", int)
"""Relay-internal primary key of a device row; never leaves the relay."""

MessageId = NewType("MessageId", str)
"""Server-assigned id of one sent message (shared by all its per-device envelopes)."""


def new_account_id() -> AccountId:
    return AccountId(secrets.token_hex(16))


def new_message_id() -> MessageId:
    return MessageId(secrets.token_hex(16))


def new_registration_id() -> int:
    """Random id that changes whenever a device's identity keys change (stale detection)."""
    return secrets.randbelow(2**31 - 1) + 1


def new_token() -> str:
    return secrets.token_urlsafe(32)

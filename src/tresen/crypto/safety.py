"""Safety numbers: a fingerprint of two accounts' identity keys, compared out of band.

Signal's numeric fingerprint, applied to all of an account's devices. Per party::

    keys  = the distinct Ed25519 identity keys of the account's devices, raw 32 bytes each,
            sorted bytewise and concatenated
    data  = version (2 bytes, big-endian) || keys || phone (E.164, ASCII)
    5200 times:  data = SHA-512(data || keys)
    digits = data[0:30] in six 5-byte chunks, each int.from_bytes(chunk, "big") % 100000
             written as 5 digits with leading zeros  -> 30 digits

The safety number is the two parties' 30-digit strings, the numerically smaller one first
(as in Signal), so both sides compute the same 60 digits; shown as 12 groups of 5. It changes
when either account adds, removes or replaces a device key, or changes its phone number.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import vodozemac

from tresen.crypto.olm import KeyFormatError

__all__ = ["ITERATIONS", "SAFETY_NUMBER_VERSION", "Party", "fingerprint", "safety_number"]

SAFETY_NUMBER_VERSION = 1
ITERATIONS = 5200

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


@dataclass(frozen=True, slots=True)
class Party:
    """One side of a conversation: an account's phone number and its devices' Ed25519 keys."""

    phone: str
    identity_keys: Sequence[str]


def fingerprint(party: Party) -> str:
    """The party's 30 digits (half of a safety number)."""
    if not _E164.fullmatch(party.phone):
        raise ValueError(f"not a phone number in E.164 form: {party.phone!r}")
    if not party.identity_keys:
        raise ValueError("a party needs at least one identity key")
    keys = b"".join(sorted({_ed25519_bytes(k) for k in party.identity_keys}))
    data = SAFETY_NUMBER_VERSION.to_bytes(2, "big") + keys + party.phone.encode("ascii")
    for _ in range(ITERATIONS):
        data = hashlib.sha512(data + keys).digest()
    return "".join(
        f"{int.from_bytes(data[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5)
    )


def safety_number(mine: Party, theirs: Party) -> str:
    """60 digits in 12 groups of 5, the same on both sides."""
    digits = "".join(sorted((fingerprint(mine), fingerprint(theirs))))
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def _ed25519_bytes(value: str) -> bytes:
    try:
        canonical = vodozemac.Ed25519PublicKey.from_base64(value).to_base64() == value
    except (ValueError, TypeError):
        canonical = False
    if not canonical:
        raise KeyFormatError(f"not an Ed25519 public key in unpadded base64: {value!r}")
    return base64.b64decode(value + "=")

"""The Cloud API's identifiers for Tresen's: message ids, ``wa_id`` and business-scoped user ids.

- A message's ``wamid`` is ``wamid.`` and the URL-safe base64 of the relay's 16-byte message
  id, so it maps both ways without a lookup and is the same for every device of the business.
- ``wa_id`` is the customer's number without ``+``.
- ``user_id`` stands for the Cloud API's business-scoped user id (``CC.digits``): the
  customer's country, then digits derived from the business and customer accounts. It is
  stable for that pair and says nothing of the number.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import phonenumbers

__all__ = ["InvalidWamid", "decode_wamid", "encode_wamid", "is_user_id", "user_id_for", "wa_id_of"]

_PREFIX = "wamid."
_RELAY_ID = re.compile(r"^[0-9a-f]{32}$")
_USER_ID = re.compile(r"^[A-Z]{2}\.[0-9]{1,128}$")


class InvalidWamid(ValueError):
    """Not a message id this gateway issued."""


def encode_wamid(relay_message_id: str) -> str:
    if not _RELAY_ID.match(relay_message_id):
        raise InvalidWamid(f"not a relay message id: {relay_message_id!r}")
    raw = bytes.fromhex(relay_message_id)
    return _PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_wamid(wamid: str) -> str:
    """The relay message id of ``wamid``; raises :class:`InvalidWamid`."""
    if not wamid.startswith(_PREFIX) or len(wamid) != len(_PREFIX) + 22:
        raise InvalidWamid(f"not a message id of this gateway: {wamid[:80]!r}")
    try:
        raw = base64.urlsafe_b64decode(wamid[len(_PREFIX) :] + "==")
    except (binascii.Error, ValueError) as exc:
        raise InvalidWamid(f"not a message id of this gateway: {wamid[:80]!r}") from exc
    if len(raw) != 16:
        raise InvalidWamid(f"not a message id of this gateway: {wamid[:80]!r}")
    return raw.hex()


def wa_id_of(phone: str | None) -> str | None:
    return None if phone is None else phone.lstrip("+")


def user_id_for(business_account: str, customer_account: str, phone: str | None) -> str:
    """The business-scoped user id of ``customer_account`` as ``business_account`` sees it."""
    region = "ZZ"
    if phone:
        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None)) or "ZZ"
        except phonenumbers.NumberParseException:
            region = "ZZ"
    digest = hashlib.sha256(f"bsuid:{business_account}:{customer_account}".encode()).digest()
    return f"{region}.{int.from_bytes(digest[:8], 'big')}"


def is_user_id(value: str) -> bool:
    return bool(_USER_ID.match(value))

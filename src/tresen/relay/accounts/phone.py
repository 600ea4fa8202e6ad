"""Phone numbers in E.164, parsed and validated with ``phonenumbers``."""

from __future__ import annotations

import re

import phonenumbers

from tresen.core.errors import ErrorCode, TresenError

__all__ = ["normalize_phone"]

# Digits and the usual separators only: no letters (vanity numbers) and no extensions.
_PLAIN = re.compile(r"\+[0-9 ()./-]{4,31}")


def normalize_phone(raw: str) -> str:
    """The E.164 form of ``raw`` (which must carry its ``+`` country prefix)."""
    if not isinstance(raw, str) or not _PLAIN.fullmatch(raw.strip()):
        raise TresenError(
            ErrorCode.INVALID_PHONE_NUMBER,
            "phone number must be in international format, e.g. +4915112345678",
            phone=str(raw)[:32],
        )
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise TresenError(
            ErrorCode.INVALID_PHONE_NUMBER, f"phone number cannot be parsed: {exc}", phone=raw
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise TresenError(ErrorCode.INVALID_PHONE_NUMBER, "phone number is not valid", phone=raw)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

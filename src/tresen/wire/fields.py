"""Bounds for values that arrive from outside and end up in the relay's database.

A value the database cannot store (an integer beyond a signed 64-bit column, a NUL character,
which PostgreSQL refuses in text) must be refused where it is decoded, with an error naming the
field, and never reach the group commit it shares with other devices' writes. These types are
the one vocabulary for that: msgspec structs use the ``Annotated`` types; pydantic models use
the constants (``Field(ge=1, le=MAX_ID, pattern=SAFE_TEXT_PATTERN)``).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "INT63_MAX",
    "INT63_MIN",
    "MAX_ID",
    "SAFE_TEXT_PATTERN",
    "Int63",
    "PositiveId",
    "SafeText",
]

INT63_MAX = 2**63 - 1
"""The largest value of a signed 64-bit column (BIGINT; SQLite's INTEGER)."""
INT63_MIN = -(2**63)
MAX_ID = INT63_MAX
"""The largest id (envelope, device, registration, template) the relay can store."""

SAFE_TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""Text without control characters (C0, DEL, C1): no NUL, which PostgreSQL refuses in text,
and nothing that rewrites a log line or a terminal. Written so that both Python's ``re`` and
pydantic's default regex engine accept it."""

Int63 = Annotated[int, msgspec.Meta(ge=INT63_MIN, le=INT63_MAX)]
"""Any integer a signed 64-bit column holds."""
PositiveId = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
"""A database id: 1 to 2**63 - 1."""
SafeText = Annotated[str, msgspec.Meta(pattern=SAFE_TEXT_PATTERN)]
"""Text without control characters; combine with a length:
``Annotated[SafeText, msgspec.Meta(min_length=1, max_length=64)]``."""

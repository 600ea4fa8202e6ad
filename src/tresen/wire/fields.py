"""Bounds for protocol fields that arrive from outside and end up in the relay's database.

A value the database cannot store (an integer beyond a signed 64-bit column, a NUL character,
which PostgreSQL refuses in text) must be refused where it is decoded, with an error naming the
field, and never reach the group commit it shares with other devices' writes. These are the
msgspec spellings of the bounds in ``core/fields.py``, which pydantic models use.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from tresen.core.fields import INT63_MAX, INT63_MIN, LINE_PATTERN

__all__ = ["Int63", "PositiveId", "SafeLine"]

Int63 = Annotated[int, msgspec.Meta(ge=INT63_MIN, le=INT63_MAX)]
"""Any integer a signed 64-bit column holds."""
PositiveId = Annotated[int, msgspec.Meta(ge=1, le=INT63_MAX)]
"""A database id: 1 to 2**63 - 1."""
SafeLine = Annotated[str, msgspec.Meta(pattern=LINE_PATTERN)]
"""One line of text without control characters; combine with a length:
``Annotated[SafeLine, msgspec.Meta(min_length=1, max_length=64)]``."""

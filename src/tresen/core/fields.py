"""Bounds for input as it is decoded: annotated types for pydantic models and FastAPI
parameters.

Whatever a request carries ends up in a SQL parameter, and the databases refuse some of it
with an error instead of an answer: PostgreSQL stores no NUL character in text, and a 64-bit
column (or the driver) overflows beyond ±2⁶³. Input that could not be stored is refused when
it is parsed, so the caller gets 400 (code 100) naming the field, never a 500.

Compose with the route's own bounds, e.g. ``Annotated[SafeStr, Field(max_length=64)]`` or
``Annotated[Id63, Path()]``.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Interval
from pydantic import AfterValidator, StringConstraints

__all__ = [
    "INT63_MAX",
    "INT63_MIN",
    "LINE_PATTERN",
    "TEXT_PATTERN",
    "Count63",
    "Id63",
    "Int63",
    "SafeJson",
    "SafeStr",
    "SafeText",
    "check_json",
]

INT63_MAX = 2**63 - 1
"""The largest value of a signed 64-bit column (BIGINT; SQLite's INTEGER), and of an id."""
INT63_MIN = -(2**63)

# One line of text: no control character (C0 such as NUL, newline and escape; DEL; C1), so
# nothing PostgreSQL refuses and nothing that rewrites a log line or a terminal. Both
# Python's ``re`` (msgspec) and pydantic's regex engine accept these patterns.
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
# Text a person writes: tab, newline and carriage return are fine, other controls are not.
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"

SafeStr = Annotated[str, StringConstraints(pattern=LINE_PATTERN)]
"""A single line of text (names, ids, phone numbers, tokens)."""

SafeText = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]
"""Free text that may have tabs and line breaks (notes, descriptions, evidence)."""

Id63 = Annotated[int, Interval(ge=1, le=INT63_MAX)]
"""A database id: 1 … 2**63 - 1."""

Count63 = Annotated[int, Interval(ge=0, le=INT63_MAX)]
"""A count, an amount or a time in milliseconds: 0 … 2**63 - 1."""

Int63 = Annotated[int, Interval(ge=INT63_MIN, le=INT63_MAX)]
"""Any integer a 64-bit column holds."""

_JSON_DEPTH = 32


def check_json(value: Any, depth: int = 0) -> Any:
    """Refuses, anywhere in a free-form JSON document, text with NUL or other C0 controls
    (tab and line breaks are fine), text that is not valid Unicode, integers beyond 64 bits,
    and nesting deeper than 32."""
    if depth > _JSON_DEPTH:
        raise ValueError(f"nested deeper than {_JSON_DEPTH}")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        pass
    elif isinstance(value, int):
        if not INT63_MIN <= value <= INT63_MAX:
            raise ValueError("integer out of range (64 bits)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json(item, depth + 1)
    return value


_CONTROLS = frozenset(
    chr(c) for c in (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0))
)


def _check_text(text: str) -> None:
    if not _CONTROLS.isdisjoint(text):
        raise ValueError("text must not contain control characters")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None


SafeJson = Annotated[dict[str, Any], AfterValidator(check_json)]
"""A free-form JSON object whose every string and integer could be stored."""

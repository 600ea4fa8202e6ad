"""Refusals of the gateway's domains (campaigns, subscriber lists) that each front end says
its own way: a stable ``code``, the English ``text`` with ``{name}`` holes and the ``values``
that fill them.

``str()`` is the English sentence, which the JSON API and the CLI show beside the code; the
inbox's pages look ``text`` up in their catalogue (the English text is the key) and fill it
in afterwards, so that an agent reads the refusal in their own language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Problem", "Reason"]


@dataclass(frozen=True, slots=True)
class Reason:
    """Why something was refused or what became of it, said without a language yet."""

    code: str
    text: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text.format(**self.values) if self.values else self.text

    def said(self, gettext: Callable[[str], str] = str) -> str:
        """In the language of ``gettext``: the text translated, then filled in."""
        text = gettext(self.text)
        try:
            return text.format(**self.values) if self.values else text
        except (KeyError, IndexError, ValueError):
            return str(self)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "text": self.text, "values": dict(self.values)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reason:
        values = data.get("values")
        return cls(
            code=str(data.get("code") or "refused"),
            text=str(data.get("text") or ""),
            values={str(k): v for k, v in values.items()} if isinstance(values, dict) else {},
        )


class Problem(Exception):
    """A refusal with its :class:`Reason`: ``code``, English ``text`` and ``values``."""

    def __init__(self, code: str, text: str, **values: Any) -> None:
        self.reason = Reason(code, text, values)
        super().__init__(str(self.reason))

    @property
    def code(self) -> str:
        return self.reason.code

    @property
    def text(self) -> str:
        return self.reason.text

    @property
    def values(self) -> Mapping[str, Any]:
        return self.reason.values

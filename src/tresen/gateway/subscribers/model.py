"""What subscriber lists and subscribers are, and the rules for their fields."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tresen.gateway.problems import Problem

__all__ = [
    "CONFIRM_WITHIN_MS",
    "KEYWORD_MAX",
    "ListInvalid",
    "ListNotFound",
    "ListSpec",
    "Purpose",
    "Source",
    "State",
    "Subscriber",
    "SubscriberList",
    "check_keyword",
    "check_spec",
]

KEYWORD_MAX = 30
NAME_MAX = 100
DESCRIPTION_MAX = 500
CONFIRMATION_MAX = 1024
CONFIRM_WITHIN_MS = 48 * 3600 * 1000
"""A pending subscriber's START counts this long after they were asked to confirm: a START
days later answers something else (or nothing we asked)."""

_KEYWORD = re.compile(r"[A-Z0-9]{1,30}")


class Purpose(StrEnum):
    """Marketing needs the customer's own signed opt-in; utility may be attested."""

    MARKETING = "marketing"
    UTILITY = "utility"


class State(StrEnum):
    PENDING = "pending"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class Source(StrEnum):
    KEYWORD = "keyword"
    LINK = "link"
    IMPORT = "import"


class ListInvalid(Problem, ValueError):
    """A list the business described cannot be kept; ``field`` names the culprit."""

    def __init__(self, field: str, code: str, text: str, **values: Any) -> None:
        super().__init__(code, text, **values)
        self.field = field


class ListNotFound(Problem, LookupError):
    def __init__(self, list_id: int) -> None:
        super().__init__("no_list", "there is no subscriber list {list}", list=list_id)
        self.list_id = list_id


@dataclass(frozen=True, slots=True)
class ListSpec:
    """A list as the business describes it (to create or edit one)."""

    name: str
    purpose: Purpose
    keyword: str | None = None
    description: str = ""
    confirmation: str = ""
    """The business's own words asking to confirm; the gateway adds how to confirm."""


@dataclass(frozen=True, slots=True)
class SubscriberList:
    id: int
    name: str
    keyword: str | None
    purpose: Purpose
    description: str
    confirmation: str
    created_ms: int
    counts: dict[State, int] = field(default_factory=dict)
    """Subscribers by state (filled where lists are shown)."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    list_id: int
    account_id: str
    phone: str
    state: State
    source: Source
    attributes: dict[str, str]
    evidence: str | None
    reason: str | None
    created_ms: int
    updated_ms: int


def check_keyword(keyword: str | None) -> str | None:
    """The keyword as stored (trimmed, upper case), ``None`` for none."""
    if keyword is None or not keyword.strip():
        return None
    word = keyword.strip().upper()
    if not _KEYWORD.fullmatch(word):
        raise ListInvalid(
            "keyword",
            "keyword_form",
            "a keyword is 1 to {most} letters A-Z or digits, without spaces",
            most=KEYWORD_MAX,
        )
    if word in {"START", "STOP", "STOPP", "ANMELDEN", "ABMELDEN"}:
        raise ListInvalid(
            "keyword",
            "keyword_reserved",
            "{keyword} already means something to every customer's app",
            keyword=word,
        )
    return word


def check_spec(spec: ListSpec) -> ListSpec:
    """``spec`` trimmed, or :class:`ListInvalid` saying what is wrong."""
    name = spec.name.strip()
    if not name or len(name) > NAME_MAX:
        raise ListInvalid(
            "name", "name_length", "a list's name is 1 to {most} characters", most=NAME_MAX
        )
    description = spec.description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise ListInvalid(
            "description",
            "description_length",
            "a description has at most {most} characters",
            most=DESCRIPTION_MAX,
        )
    confirmation = spec.confirmation.strip()
    if len(confirmation) > CONFIRMATION_MAX - 200:
        # Room for the line the gateway adds ("Reply START to confirm").
        raise ListInvalid(
            "confirmation",
            "confirmation_length",
            "a confirmation has at most {most} characters",
            most=CONFIRMATION_MAX - 200,
        )
    return ListSpec(
        name=name,
        purpose=Purpose(spec.purpose),
        keyword=check_keyword(spec.keyword),
        description=description,
        confirmation=confirmation,
    )

"""Segments: a list's subscribers narrowed by conversation labels and attribute conditions,
as the campaign engine asks for its recipients.

An audience spec is JSON: ``{"list": 3, "labels": ["vip"], "where": {"city": "Berlin",
"tier": {"in": ["gold", "silver"]}, "birthday": {"has": true}}}``. Every label must be on the
customer's conversation, and every condition must hold (``equals`` a value, ``in`` one of
several, ``has`` the attribute at all); attribute values compare as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tresen.core.db import Database
from tresen.gateway.problems import Problem
from tresen.gateway.subscribers import repo
from tresen.gateway.subscribers.model import ListNotFound, State

__all__ = [
    "Audience",
    "AudienceInvalid",
    "Condition",
    "Recipient",
    "Segments",
    "matches",
    "parse_audience",
]

MAX_LABELS = 20
MAX_CONDITIONS = 20


class AudienceInvalid(Problem, ValueError):
    """An audience spec that cannot be used (the code and message say what is wrong)."""


@dataclass(frozen=True, slots=True)
class Condition:
    attribute: str
    op: str
    """``equals``, ``in`` or ``has``."""
    values: tuple[str, ...] = ()
    present: bool = True


@dataclass(frozen=True, slots=True)
class Audience:
    list_id: int
    labels: tuple[str, ...] = ()
    where: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class Recipient:
    account_id: str
    phone: str
    attributes: dict[str, str]


def _text(value: object, attribute: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise AudienceInvalid(
            "condition_value", "{attribute}: compare with text or a number", attribute=attribute
        )
    return str(value)


def _condition(attribute: str, spec: object) -> Condition:
    if not isinstance(spec, Mapping):
        return Condition(attribute, "equals", (_text(spec, attribute),))
    if len(spec) != 1:
        raise AudienceInvalid(
            "condition_op", "{attribute}: one of equals, in or has", attribute=attribute
        )
    [(op, value)] = spec.items()
    if op == "equals":
        return Condition(attribute, "equals", (_text(value, attribute),))
    if op == "in":
        if not isinstance(value, list) or not value:
            raise AudienceInvalid(
                "condition_in", "{attribute}: in takes a list of values", attribute=attribute
            )
        return Condition(attribute, "in", tuple(_text(v, attribute) for v in value))
    if op == "has":
        if not isinstance(value, bool):
            raise AudienceInvalid(
                "condition_has", "{attribute}: has takes true or false", attribute=attribute
            )
        return Condition(attribute, "has", present=value)
    raise AudienceInvalid(
        "condition_op", "{attribute}: {op} is not equals, in or has", attribute=attribute, op=op
    )


def parse_audience(spec: Mapping[str, Any]) -> Audience:
    """An audience spec (JSON) checked, or :class:`AudienceInvalid` saying what is wrong."""
    unknown = set(spec) - {"list", "labels", "where"}
    if unknown:
        raise AudienceInvalid(
            "audience_keys",
            "an audience has list, labels and where, not {unknown}",
            unknown=sorted(unknown),
        )
    list_id = spec.get("list")
    if isinstance(list_id, bool) or not isinstance(list_id, int):
        raise AudienceInvalid("audience_list", "an audience names its list by id")
    labels = spec.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise AudienceInvalid("audience_labels", "labels is a list of label names")
    if len(labels) > MAX_LABELS:
        raise AudienceInvalid("too_many_labels", "at most {most} labels", most=MAX_LABELS)
    where = spec.get("where") or {}
    if not isinstance(where, Mapping):
        raise AudienceInvalid("audience_where", "where maps attributes to conditions")
    if len(where) > MAX_CONDITIONS:
        raise AudienceInvalid(
            "too_many_conditions", "at most {most} conditions", most=MAX_CONDITIONS
        )
    return Audience(
        list_id,
        tuple(dict.fromkeys(labels)),
        tuple(_condition(str(k), v) for k, v in where.items()),
    )


def matches(attributes: Mapping[str, str], conditions: Sequence[Condition]) -> bool:
    for c in conditions:
        value = attributes.get(c.attribute)
        if c.op == "has":
            if (value is not None and value != "") is not c.present:
                return False
        elif value is None or value not in c.values:
            return False
    return True


class Segments:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def recipients(self, audience: Audience | Mapping[str, Any]) -> list[Recipient]:
        """The subscribed customers of the audience, oldest subscriber first. Consent is
        checked again per recipient just before sending (``SubscriberLists.still_subscribed``)."""
        if not isinstance(audience, Audience):
            audience = parse_audience(audience)
        async with self.db.read() as conn:
            if await repo.get_list(conn, audience.list_id) is None:
                raise ListNotFound(audience.list_id)
            entries = await repo.subscribers_of(
                conn, audience.list_id, states=(State.SUBSCRIBED,), labels_all=audience.labels
            )
        return [
            Recipient(e.account_id, e.phone, e.attributes)
            for e in entries
            if matches(e.attributes, audience.where)
        ]

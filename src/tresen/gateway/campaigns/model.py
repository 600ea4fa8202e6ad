"""What a campaign is: its states, its audience, its schedule, and what came of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NewType

__all__ = [
    "ACTIVE",
    "AudienceSpec",
    "CampaignDraft",
    "CampaignId",
    "CampaignState",
    "CampaignSummary",
    "Condition",
    "Recipient",
    "RecipientState",
    "Schedule",
]

CampaignId = NewType("CampaignId", int)


class CampaignState(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING = "waiting"
    """For the tier's budget of new customers: goes on at ``resume_ms``."""
    DONE = "done"
    CANCELLED = "cancelled"


ACTIVE = frozenset({CampaignState.SCHEDULED, CampaignState.RUNNING, CampaignState.WAITING})
"""The states in which the runner sends."""


class RecipientState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    """Handed to the relay, its answer not recorded yet: after a crash sent again with the
    same client message id (the relay's duplicate, never a second message)."""
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    OPTED_OUT = "opted_out"


@dataclass(frozen=True, slots=True)
class Recipient:
    """Someone a campaign is for: a phone number (E.164) or an account id, with attributes
    (e.g. from a CSV row) that fill the template's parameters."""

    phone: str | None = None
    account_id: str | None = None
    name: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "phone": self.phone,
            "account_id": self.account_id,
            "name": self.name,
            "attributes": self.attributes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipient:
        return cls(
            phone=data.get("phone"),
            account_id=data.get("account_id"),
            name=data.get("name"),
            attributes={str(k): str(v) for k, v in (data.get("attributes") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Condition:
    """An attribute condition: ``op`` equals (one value), in (any of the values) or has
    (any value at all)."""

    attribute: str
    op: str
    values: tuple[str, ...]

    def holds(self, attributes: dict[str, str]) -> bool:
        value = attributes.get(self.attribute)
        if value is None:
            return False
        if self.op == "has":
            return value != ""
        if self.op == "equals":
            return value == self.values[0]
        return value in self.values


@dataclass(frozen=True, slots=True)
class AudienceSpec:
    """Who a campaign goes to: the explicit ``recipients``, the members of ``lists`` (from
    an :class:`~tresen.gateway.campaigns.audience.AudienceSource`), the customers whose
    conversation carries one of ``labels``; all filtered by every condition."""

    recipients: tuple[Recipient, ...] = ()
    lists: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "recipients": [r.to_json() for r in self.recipients],
            "lists": list(self.lists),
            "labels": list(self.labels),
            "conditions": [
                {"attribute": c.attribute, "op": c.op, "values": list(c.values)}
                for c in self.conditions
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AudienceSpec:
        return cls(
            recipients=tuple(Recipient.from_json(r) for r in data.get("recipients", [])),
            lists=tuple(int(i) for i in data.get("lists", [])),
            labels=tuple(str(x) for x in data.get("labels", [])),
            conditions=tuple(
                Condition(str(c["attribute"]), str(c["op"]), tuple(str(v) for v in c["values"]))
                for c in data.get("conditions", [])
            ),
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    """When: ``start_ms`` (``None``: as soon as started), spread evenly over ``spread_s``
    (0: as fast as allowed); ``quiet_hours`` ("21:00", "08:00") in ``time_zone`` (``None``:
    the business's, else UTC) when nothing is sent. ``quiet_hours`` ``None`` takes the
    default: 21:00 to 08:00 for marketing templates, none otherwise; ``()``: none."""

    start_ms: int | None = None
    spread_s: int = 0
    quiet_hours: tuple[str, str] | tuple[()] | None = None
    time_zone: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "spread_s": self.spread_s,
            "quiet_hours": None if self.quiet_hours is None else list(self.quiet_hours),
            "time_zone": self.time_zone,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        quiet = data.get("quiet_hours")
        hours: tuple[str, str] | tuple[()] | None
        if quiet is None:
            hours = None
        elif len(quiet) == 2:
            hours = (str(quiet[0]), str(quiet[1]))
        else:
            hours = ()
        return cls(
            start_ms=data.get("start_ms"),
            spread_s=int(data.get("spread_s", 0)),
            quiet_hours=hours,
            time_zone=data.get("time_zone"),
        )


@dataclass(frozen=True, slots=True)
class CampaignDraft:
    """What a business asks for: ``components`` as a Cloud API template send gives them,
    with ``{{attribute}}`` (and ``{{name}}``, ``{{phone}}``) filled per recipient."""

    name: str
    template_name: str
    language: str
    audience: AudienceSpec
    components: list[dict[str, Any]] = field(default_factory=list)
    schedule: Schedule = field(default_factory=Schedule)


@dataclass(frozen=True, slots=True)
class CampaignSummary:
    id: CampaignId
    name: str
    template_name: str
    language: str
    category: str
    audience: AudienceSpec
    components: list[dict[str, Any]]
    schedule: Schedule
    state: CampaignState
    reason: str | None
    start_ms: int | None
    resume_ms: int | None
    created_ms: int
    updated_ms: int
    finished_ms: int | None
    counts: dict[str, int]
    """Recipients per state (every :class:`RecipientState`, 0 included)."""
    figures: dict[str, Any] | None = None
    """Set once retention reduced the recipients' rows: what the results are read from
    (``campaigns.figures``)."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

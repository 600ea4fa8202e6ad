"""Reports for owners and admins, computed from the activity table alone.

An *opening* starts when the customer writes into a new or resolved conversation (an
``opened`` row) and ends when it is resolved (the first ``status`` row ``resolved`` after
it). For each opening:

- its *first-response time* runs from the opening to the first agent ``reply`` after it,
  counted on the day of that reply;
- its *resolution time* runs from the opening to its resolution, counted on the day it was
  resolved (with the conversations resolved that day);
- it is *opened* on the day of its ``opened`` row.

An opening belongs to the agent it was last assigned to (by the name the assignment
recorded), else to whoever answered it first, else to no one (``""``); and to each label the
conversation carried when the opening was resolved (or at the end of the range), else to no
label (``""``). Days are calendar days in the chosen time zone.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sqlalchemy import select

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.schema import activity

__all__ = [
    "CSV_COLUMNS",
    "MAX_DAYS",
    "Chart",
    "Done",
    "Figures",
    "Report",
    "Reports",
    "as_csv",
    "bar_chart",
    "day_range",
    "summarise",
]

MAX_DAYS = 366
MAX_ROWS = 500_000
KINDS = ("opened", "reply", "assign", "status", "label", "unlabel")
CSV_COLUMNS = (
    "date",
    "agent",
    "label",
    "opened",
    "resolved",
    "first_responses",
    "first_response_avg_s",
    "resolution_avg_s",
)


@dataclass(frozen=True, slots=True)
class Done:
    """One row of the activity table."""

    contact: str
    agent_id: int | None
    kind: str
    detail: str
    at_ms: int


@dataclass(slots=True)
class Figures:
    opened: int = 0
    resolved: int = 0
    first_responses_ms: list[int] = field(default_factory=list)
    resolutions_ms: list[int] = field(default_factory=list)

    @property
    def first_response_avg_s(self) -> int | None:
        return _seconds(statistics.fmean(self.first_responses_ms or [0]), self.first_responses_ms)

    @property
    def first_response_median_s(self) -> int | None:
        return _seconds(statistics.median(self.first_responses_ms or [0]), self.first_responses_ms)

    @property
    def resolution_avg_s(self) -> int | None:
        return _seconds(statistics.fmean(self.resolutions_ms or [0]), self.resolutions_ms)

    @property
    def resolution_median_s(self) -> int | None:
        return _seconds(statistics.median(self.resolutions_ms or [0]), self.resolutions_ms)


def _seconds(ms: float, of: Sequence[int]) -> int | None:
    return math.floor(ms / 1000 + 0.5) if of else None


@dataclass(frozen=True, slots=True)
class Report:
    start: date
    end: date
    zone: str
    total: Figures
    days: dict[date, Figures]
    agents: dict[str, Figures]
    labels: dict[str, Figures]
    cells: dict[tuple[date, str, str], Figures]


@dataclass(slots=True)
class _Opening:
    at_ms: int
    first_reply_ms: int | None = None
    first_replier: int | None = None
    assignee: str | None = None
    resolved_ms: int | None = None


def day_range(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def bounds_ms(start: date, end: date, zone: tzinfo) -> tuple[int, int]:
    """The first millisecond of ``start`` and the first after ``end``, in ``zone``."""
    first = datetime.combine(start, time(), tzinfo=zone)
    after = datetime.combine(end + timedelta(days=1), time(), tzinfo=zone)
    return int(first.timestamp() * 1000), int(after.timestamp() * 1000)


def summarise(
    rows: Iterable[Done],
    *,
    start: date,
    end: date,
    zone: tzinfo = UTC,
    names: dict[int, str] | None = None,
) -> Report:
    """The report of ``start`` to ``end`` (both included) from activity rows, which come
    grouped by conversation and in order of time."""
    names = names or {}
    start_ms, end_ms = bounds_ms(start, end, zone)
    days = {d: Figures() for d in day_range(start, end)}
    total = Figures()
    agents: dict[str, Figures] = {}
    labels: dict[str, Figures] = {}
    cells: dict[tuple[date, str, str], Figures] = {}

    def day_of(ms: int) -> date:
        return datetime.fromtimestamp(ms / 1000, zone).date()

    def count(opening: _Opening, carried: set[str]) -> None:
        who = opening.assignee
        if who is None and opening.first_replier is not None:
            who = names.get(opening.first_replier, "")
        who = who or ""
        tags = sorted(carried) or [""]

        def add(at_ms: int, change: str, value: int = 0) -> None:
            if not start_ms <= at_ms < end_ms:
                return
            when = day_of(at_ms)
            groups = [total, days[when], agents.setdefault(who, Figures())]
            groups += [labels.setdefault(tag, Figures()) for tag in tags]
            groups += [cells.setdefault((when, who, tag), Figures()) for tag in tags]
            for figures in groups:
                if change == "opened":
                    figures.opened += 1
                elif change == "first_response":
                    figures.first_responses_ms.append(value)
                else:
                    figures.resolved += 1
                    figures.resolutions_ms.append(value)

        add(opening.at_ms, "opened")
        if opening.first_reply_ms is not None:
            add(opening.first_reply_ms, "first_response", opening.first_reply_ms - opening.at_ms)
        if opening.resolved_ms is not None:
            add(opening.resolved_ms, "resolved", opening.resolved_ms - opening.at_ms)

    contact: str | None = None
    opening: _Opening | None = None
    carried: set[str] = set()
    for row in rows:
        if row.at_ms >= end_ms:
            continue
        if row.contact != contact:
            if opening is not None:
                count(opening, carried)
            contact, opening, carried = row.contact, None, set()
        if row.kind == "label":
            carried.add(row.detail)
        elif row.kind == "unlabel":
            carried.discard(row.detail)
        elif row.kind == "opened":
            if opening is not None:
                count(opening, carried)
            opening = _Opening(row.at_ms)
        elif opening is None:
            continue  # what happened between openings is not measured
        elif row.kind == "reply" and opening.first_reply_ms is None:
            opening.first_reply_ms, opening.first_replier = row.at_ms, row.agent_id
        elif row.kind == "assign":
            opening.assignee = row.detail or None
        elif row.kind == "status" and row.detail == "resolved":
            opening.resolved_ms = row.at_ms
            count(opening, carried)
            opening = None
    if opening is not None:
        count(opening, carried)
    return Report(
        start=start,
        end=end,
        zone=str(zone),
        total=total,
        days=days,
        agents=dict(sorted(agents.items())),
        labels=dict(sorted(labels.items())),
        cells=dict(sorted(cells.items())),
    )


def as_csv(report: Report) -> str:
    """One row per day, agent and label that had anything (an opening with two labels is in
    two rows; ``""`` is no agent or no label); times in whole seconds, empty when none."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for (day, agent, label), f in report.cells.items():
        writer.writerow(
            [
                day.isoformat(),
                _safe(agent),
                _safe(label),
                f.opened,
                f.resolved,
                len(f.first_responses_ms),
                "" if f.first_response_avg_s is None else f.first_response_avg_s,
                "" if f.resolution_avg_s is None else f.resolution_avg_s,
            ]
        )
    return out.getvalue()


def _safe(cell: str) -> str:
    """A name as a spreadsheet shows it, never as a formula."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    value: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """A bar chart laid out for SVG: bars, the labels under them, and the top of the scale."""

    width: int
    height: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]
    top: float
    baseline: float


def bar_chart(
    groups: Sequence[tuple[str, Sequence[float | None]]],
    *,
    width: int = 640,
    height: int = 200,
    axis: int = 20,
) -> Chart:
    """Grouped bars (one group per x label, one bar per series), scaled to the largest."""
    top = max([v for _, values in groups for v in values if v is not None] or [0.0])
    scale = top or 1.0
    plot = height - axis
    slot = width / max(1, len(groups))
    series = max([len(values) for _, values in groups] or [1])
    bar = max(1.0, slot * 0.8 / series)
    bars = []
    ticks = []
    every = max(1, math.ceil(len(groups) / 8))
    for index, (label, values) in enumerate(groups):
        left = index * slot + slot * 0.1
        for n, value in enumerate(values):
            h = 0.0 if value is None else plot * value / scale
            bars.append(Bar(left + n * bar, plot - h, bar, h, n, value or 0.0, label))
        if index % every == 0:
            ticks.append((index * slot + slot / 2, label))
    return Chart(width, height, bars, ticks, top, plot)


class Reports:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def today(self, zone: tzinfo) -> date:
        return datetime.fromtimestamp(self.clock.now_ms() / 1000, zone).date()

    async def report(
        self, start: date, end: date, zone: tzinfo = UTC, names: dict[int, str] | None = None
    ) -> Report:
        """The report of ``start`` to ``end`` (both included, at most ``MAX_DAYS`` days)."""
        if end < start:
            raise Refused("the range ends before it starts")
        if (end - start).days + 1 > MAX_DAYS:
            raise Refused("a report covers at most {n} days", n=MAX_DAYS)
        start_ms, end_ms = bounds_ms(start, end, zone)
        touched = (
            select(activity.c.contact)
            .where(
                activity.c.kind.in_(("opened", "reply", "status")),
                activity.c.at_ms >= start_ms,
                activity.c.at_ms < end_ms,
            )
            .distinct()
        )
        query = (
            select(
                activity.c.contact,
                activity.c.agent_id,
                activity.c.kind,
                activity.c.detail,
                activity.c.at_ms,
            )
            .where(
                activity.c.contact.in_(touched),
                activity.c.kind.in_(KINDS),
                activity.c.at_ms < end_ms,
            )
            .order_by(activity.c.contact, activity.c.at_ms, activity.c.id)
            .limit(MAX_ROWS + 1)
        )
        async with self.db.read() as conn:
            found = (await conn.execute(query)).all()
        if len(found) > MAX_ROWS:
            raise Refused("there is too much activity for one report: choose a shorter range")
        rows = (
            Done(str(r.contact), r.agent_id, str(r.kind), str(r.detail), int(r.at_ms))
            for r in found
        )
        return summarise(rows, start=start, end=end, zone=zone, names=names)

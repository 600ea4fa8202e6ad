"""The business's opening hours as automation needs them, and when greeting and away
messages are due.

Hours come from the business profile the gateway keeps (weekly hours, closed dates, time
zone); open or closed is decided in the business's own zone, so daylight saving time moves
nothing. ``due()`` is pure: the engine gives it the facts and the time, which makes the rules
testable with any clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tresen.gateway.automation.config import AutomationSettings
from tresen.wire.business import WeeklyHours, is_open, next_change, parse_closed_dates

__all__ = ["DAY_MS", "Facts", "Hours", "due"]

DAY_MS = 24 * 3600 * 1000
MINUTE_MS = 60 * 1000

WEEKDAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
}
TODAY = {"en": "today at {time}", "de": "heute um {time} Uhr"}
TOMORROW = {"en": "tomorrow at {time}", "de": "morgen um {time} Uhr"}
ON_DAY = {"en": "{day} at {time}", "de": "{day} um {time} Uhr"}
ON_DATE = {"en": "{day}, {date} at {time}", "de": "{day}, {date} um {time} Uhr"}
NEVER = {"en": "a later day", "de": "einem späteren Tag"}


@dataclass(frozen=True, slots=True)
class Hours:
    hours: WeeklyHours
    closed_dates: tuple[date, ...]
    zone: str

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any] | None) -> Hours | None:
        """The profile's hours; ``None`` when it publishes none (or they do not parse)."""
        if not profile or not profile.get("hours"):
            return None
        try:
            hours = WeeklyHours.parse(profile["hours"])
            closed = parse_closed_dates(list(profile.get("closed_dates") or ()))
            zone = str(profile.get("timezone") or "UTC")
            ZoneInfo(zone)
        except (ValueError, TypeError, KeyError, ZoneInfoNotFoundError):
            return None
        if not any(hours.days):
            return None
        return cls(hours, closed, zone)

    def open_at(self, now_ms: int) -> bool:
        return is_open(self.hours, self.closed_dates, self.zone, now_ms)

    def local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, ZoneInfo(self.zone))

    def day(self, ms: int) -> date:
        """The business's calendar day at ``ms``."""
        return self.local(ms).date()

    def opens(self, now_ms: int, language: str) -> str:
        """When people are there again, for a customer: "tomorrow at 09:00 (Europe/Berlin)"."""
        language = language if language in WEEKDAYS else "en"
        if self.open_at(now_ms):
            change = now_ms
        else:
            found = next_change(self.hours, self.closed_dates, self.zone, now_ms)
            if found is None:
                return NEVER[language]
            change = found
        at = self.local(change)
        today = self.local(now_ms).date()
        time = at.strftime("%H:%M")
        days = (at.date() - today).days
        if days == 0:
            said = TODAY[language].format(time=time)
        elif days == 1:
            said = TOMORROW[language].format(time=time)
        elif days < 7:
            said = ON_DAY[language].format(day=WEEKDAYS[language][at.weekday()], time=time)
        else:
            written = at.strftime("%d.%m.%Y") if language == "de" else at.strftime("%Y-%m-%d")
            said = ON_DATE[language].format(
                day=WEEKDAYS[language][at.weekday()], date=written, time=time
            )
        return f"{said} ({self.zone})"


@dataclass(frozen=True, slots=True)
class Facts:
    """What ``due()`` decides from, for one customer message."""

    now_ms: int
    first_message: bool
    """The customer never wrote before."""
    silent_since_ms: int | None
    """The conversation's latest message before this one (``None``: there was none)."""
    agent_answered_ms: int | None
    """When an agent last answered in this conversation."""
    greeted_ms: int | None
    away_ms: int | None
    bot_holds: bool
    """The bot answers this conversation (it tells of the hours only when it hands over)."""


def _same_day(hours: Hours | None, a_ms: int | None, b_ms: int) -> bool:
    if a_ms is None:
        return False
    if hours is None:
        return b_ms - a_ms < DAY_MS
    return hours.day(a_ms) == hours.day(b_ms)


def due(settings: AutomationSettings, hours: Hours | None, facts: Facts) -> tuple[str, ...]:
    """Which of ``greeting`` and ``away`` to send now, in that order.

    Neither when an agent answered within the quiet period. The greeting on the customer's
    first message, and again after ``again_after_days`` of silence; the away message outside
    the hours and on closed dates (never without published hours), unless the bot holds the
    conversation. Each at most once per customer per day (the business's day)."""
    now = facts.now_ms
    quiet_ms = settings.quiet_after_agent_minutes * MINUTE_MS
    if facts.agent_answered_ms is not None and now - facts.agent_answered_ms < quiet_ms:
        return ()
    out: list[str] = []
    greeting = settings.greeting
    if greeting.enabled and not _same_day(hours, facts.greeted_ms, now):
        silence = greeting.again_after_days * DAY_MS
        again = (
            greeting.again_after_days > 0
            and facts.silent_since_ms is not None
            and now - facts.silent_since_ms >= silence
        )
        if facts.first_message or again:
            out.append("greeting")
    if (
        settings.away.enabled
        and not facts.bot_holds
        and hours is not None
        and not hours.open_at(now)
        and not _same_day(hours, facts.away_ms, now)
    ):
        out.append("away")
    return tuple(out)

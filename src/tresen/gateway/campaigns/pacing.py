"""The pace of a campaign as pure functions of the time and the counts, so that tests need
no clock: quiet hours, spreading, and the tier's budget of new customers."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_QUIET_HOURS",
    "WINDOW_MS",
    "budget_of",
    "due_times",
    "parse_hhmm",
    "quiet_until",
]

DEFAULT_QUIET_HOURS = ("21:00", "08:00")
"""Marketing is not sent at night in the recipient's business's time zone."""
WINDOW_MS = 24 * 3600 * 1000
"""The customer-service window and the tier's rolling period."""


def parse_hhmm(text: str) -> dt.time:
    hours, _, minutes = text.partition(":")
    return dt.time(int(hours), int(minutes or 0))


def _zone(name: str | None) -> dt.tzinfo:
    if not name:
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def quiet_until(now_ms: int, hours: tuple[str, str], time_zone: str | None) -> int | None:
    """When the quiet hours ``hours`` (start, end; may wrap midnight) that hold at
    ``now_ms`` end, in ms; ``None`` when it is not quiet now."""
    start, end = parse_hhmm(hours[0]), parse_hhmm(hours[1])
    if start == end:
        return None
    zone = _zone(time_zone)
    now = dt.datetime.fromtimestamp(now_ms / 1000, zone)
    clock = now.time()
    # Hours that wrap midnight (21:00 to 08:00) are quiet after the start or before the end.
    quiet = start <= clock < end if start < end else clock >= start or clock < end
    if not quiet:
        return None
    day = now.date() if clock < end else now.date() + dt.timedelta(days=1)
    ends = dt.datetime.combine(day, end, zone)
    return int(ends.timestamp() * 1000)


def due_times(start_ms: int, count: int, spread_s: int) -> list[int]:
    """When each of ``count`` recipients is due: all at ``start_ms``, or evenly over
    ``spread_s`` seconds."""
    if count <= 0:
        return []
    if spread_s <= 0 or count == 1:
        return [start_ms] * count
    step = spread_s * 1000 / count
    return [start_ms + int(i * step) for i in range(count)]


def budget_of(tier_limit: int | None, reached_24h: int) -> int | None:
    """New customers a business may still reach outside a window (``None``: unlimited)."""
    if tier_limit is None or tier_limit <= 0:
        return None
    return max(0, tier_limit - reached_24h)
